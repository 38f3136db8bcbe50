import { describe, expect, it } from 'vitest';
import { decodeWebhookBody } from './decode-webhook-body.js';

const json = '{"ref":"refs/heads/master","message":"caf\u00e9 & 100% + more"}';
const form = (value: string) => `payload=${encodeURIComponent(value)}`;
// Go's url.Values.Encode (Gitea) writes spaces as '+'.
const goForm = (value: string) => `payload=${encodeURIComponent(value).replace(/%20/g, '+')}`;

describe('decodeWebhookBody', () => {
  it('JSON: the raw body is what was signed', () => {
    expect(decodeWebhookBody('github', 'json', Buffer.from(json))).toEqual({ payload: JSON.parse(json), signed: json });
  });

  it('GitHub form: the form body as sent is what was signed', () => {
    const body = form(json);
    expect(decodeWebhookBody('github', 'form', Buffer.from(body))).toEqual({ payload: JSON.parse(json), signed: body });
  });

  it('Gitea form: the JSON inside payload= is what was signed', () => {
    expect(decodeWebhookBody('gitea', 'form', Buffer.from(goForm(json)))).toEqual({ payload: JSON.parse(json), signed: json });
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
  ] as const)('refuses %s (400)', (_name, media, body) => {
    expect(() => decodeWebhookBody('github', media, Buffer.from(body))).toThrow(expect.objectContaining({ code: 'invalid_payload', status: 400 }));
  });

  it('refuses bytes that are not UTF-8, which could not be verified faithfully', () => {
    const bad = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    expect(() => decodeWebhookBody('github', 'json', bad)).toThrow(expect.objectContaining({ code: 'invalid_payload' }));
    expect(() => decodeWebhookBody('gitea', 'form', Buffer.from('payload=%7B%22a%22%3A%22%C3%28%22%7D'))).toThrow(expect.objectContaining({ code: 'invalid_payload' }));
  });
});
