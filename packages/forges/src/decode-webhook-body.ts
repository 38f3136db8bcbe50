import type { MediaType } from './webhook-media-type.js';
import type { Provider } from './provider.js';
import { WebhookError } from './webhook-error.js';

export interface DecodedBody {
  /** The parsed JSON document (an object). Unverified until the signature is checked. */
  payload: Record<string, unknown>;
  /**
   * Exactly the bytes the forge signed, as text: the raw body, except for
   * Gitea's form encoding, whose HMAC covers the JSON inside `payload=`.
   * Decoding is strict UTF-8, so this text encodes back to the same bytes.
   */
  signed: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Turns a raw webhook body into its JSON payload and the text its signature covers. */
export function decodeWebhookBody(provider: Provider, media: MediaType, raw: Uint8Array): DecodedBody {
  const text = strictUtf8(raw, 'the body');
  if (media === 'json') return { payload: parseObject(text), signed: text };

  const fields = text.split('&').filter((pair) => pair !== '');
  const payloads = fields.filter((pair) => unescapeBuffer(pair.split('=', 1)[0]!).toString('latin1') === 'payload');
  if (payloads.length !== 1 || fields.length !== 1) {
    throw new WebhookError('invalid_payload', 'a form-encoded body must hold exactly one field, payload=<JSON>');
  }
  const pair = payloads[0]!;
  const json = strictUtf8(unescapeBuffer(pair.slice(pair.indexOf('=') + 1)), 'the payload field');
  // GitHub signs the body as sent; Gitea, Forgejo and Gogs sign the JSON before form-encoding it.
  return { payload: parseObject(json), signed: provider === 'github' ? text : json };
}

/** Form-decodes one `application/x-www-form-urlencoded` component to its bytes (`+` is a space). */
function unescapeBuffer(component: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < component.length; i++) {
    const c = component.charCodeAt(i);
    if (c === 0x25 /* % */ && /^[0-9A-Fa-f]{2}$/.test(component.slice(i + 1, i + 3))) {
      bytes.push(parseInt(component.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === 0x2b /* + */) {
      bytes.push(0x20);
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      // Raw non-ASCII in a form body: keep its UTF-8 bytes.
      const char = String.fromCodePoint(component.codePointAt(i)!);
      bytes.push(...Buffer.from(char, 'utf8'));
      i += char.length - 1;
    }
  }
  return Buffer.from(bytes);
}

function strictUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new WebhookError('invalid_payload', `${what} is not valid UTF-8`);
  }
}

function parseObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new WebhookError('invalid_payload', 'the body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new WebhookError('invalid_payload', 'the body must be a JSON object');
  }
  return value as Record<string, unknown>;
}
