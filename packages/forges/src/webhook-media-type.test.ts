import { describe, expect, it } from 'vitest';
import { webhookMediaType } from './webhook-media-type.js';
import type { Provider } from './provider.js';

describe('webhookMediaType', () => {
  it.each<[Provider, string | string[] | undefined, 'json' | 'form' | 415]>([
    ['github', 'application/json', 'json'],
    ['github', 'Application/JSON; charset=utf-8', 'json'],
    ['github', 'application/json; charset="UTF-8"', 'json'],
    ['github', 'application/x-www-form-urlencoded', 'form'],
    ['gitea', 'application/x-www-form-urlencoded', 'form'],
    ['gitlab', 'application/json', 'json'],
    ['gitlab', 'application/x-www-form-urlencoded', 415],
    ['github', 'application/json; charset=latin1', 415],
    ['github', 'text/plain', 415],
    ['github', 'multipart/form-data; boundary=x', 415],
    ['github', 'application/jsonp', 415],
    ['github', '', 415],
    ['github', undefined, 415],
    ['github', ['application/json', 'text/plain'], 415],
  ])('%s %j → %s', (provider, header, expected) => {
    if (expected === 415) expect(() => webhookMediaType(provider, header)).toThrow(expect.objectContaining({ status: 415, code: 'unsupported_media_type' }));
    else expect(webhookMediaType(provider, header)).toBe(expected);
  });
});
