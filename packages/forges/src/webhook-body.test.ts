import { describe, expect, it } from 'vitest';
import { decodeWebhookBody } from './webhook-body.js';

const json = '{"ref":"refs/heads/master","message":"caf\u00e9 & 100% + more"}';
const form = (value: string) => `payload=${encodeURIComponent(value)}`;
// Go's url.Values.Encode (Gitea) writes spaces as '+'.
const goForm = (value: string) => `payload=${encodeURIComponent(value).replace(/%20/g, '+')}`;

describe('decodeWebhookBody', () => {
  const decoded = (provider: 'github' | 'gitea', media: 'json' | 'form', body: string) => {
    const result = decodeWebhookBody(provider, media, Buffer.from(body));
    return { identity: result.identity, signed: result.signed(), payload: result.payload() };
  };

  it('JSON: the raw body is what was signed', () => {
    expect(decoded('github', 'json', json)).toEqual({ identity: null, payload: JSON.parse(json), signed: json });
  });

  it('GitHub form: the form body as sent is what was signed', () => {
    const body = form(json);
    expect(decoded('github', 'form', body)).toEqual({ identity: null, payload: JSON.parse(json), signed: body });
  });

  it('Gitea form: the JSON inside payload= is what was signed', () => {
    expect(decoded('gitea', 'form', goForm(json))).toEqual({ identity: null, payload: JSON.parse(json), signed: json });
  });

  it('the repository is read from JSON and from a form, %-escapes and + decoded', () => {
    const named = JSON.stringify({ repository: { full_name: 'acme/web app', clone_url: 'https://example.com/acme/web.git' } });
    const identity = { fullName: 'acme/web app', urls: ['https://example.com/acme/web.git'] };
    expect(decodeWebhookBody('github', 'json', Buffer.from(named)).identity).toEqual(identity);
    expect(decodeWebhookBody('github', 'form', Buffer.from(form(named))).identity).toEqual(identity);
    expect(decodeWebhookBody('gitea', 'form', Buffer.from(`&${goForm(named)}&`)).identity).toEqual(identity);
    expect(decodeWebhookBody('gitea', 'form', Buffer.from(`%70ayload=${encodeURIComponent(named)}`)).identity).toEqual(identity);
  });

  it('an unverified body is not parsed: a body of nested arrays costs its bytes, not a document', () => {
    const body = Buffer.from(`{"a":${'[]'.repeat(2_000_000).replace(/\]\[/g, '],[').replace(/^/, '[')}]}`);
    global.gc?.();
    const before = process.memoryUsage().heapUsed;
    const result = decodeWebhookBody('github', 'json', body);
    expect(result.identity).toBeNull();
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(4 * 1024 * 1024);
  });

  it.each([
    ['empty body', 'json', ''],
    ['truncated JSON', 'json', json.slice(0, 20)],
    ['a JSON array', 'json', '[1,2]'],
    ['JSON null', 'json', 'null'],
    ['a JSON string', 'json', '"x"'],
    ['a byte-order mark', 'json', '\ufeff{}'],
    ['no payload field', 'form', 'other=1'],
    ['two payload fields', 'form', 'payload=%7B%7D&payload=%7B%7D'],
    ['payload and another field', 'form', 'payload=%7B%7D&x=1'],
    ['payload that is not JSON', 'form', 'payload=nope'],
    ['payload without =', 'form', 'payload'],
    ['a name that only starts with payload', 'form', 'payloads=%7B%7D'],
    ['only empty fields', 'form', '&&'],
  ] as const)('refuses %s (400)', (_name, media, body) => {
    expect(() => decodeWebhookBody('github', media, Buffer.from(body))).toThrow(expect.objectContaining({ code: 'invalid_payload', status: 400 }));
  });

  it('refuses bytes that are not UTF-8, which could not be verified faithfully', () => {
    const bad = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    expect(() => decodeWebhookBody('github', 'json', bad)).toThrow(expect.objectContaining({ code: 'invalid_payload' }));
    expect(() => decodeWebhookBody('gitea', 'form', Buffer.from('payload=%7B%22a%22%3A%22%C3%28%22%7D'))).toThrow(expect.objectContaining({ code: 'invalid_payload' }));
  });
});
