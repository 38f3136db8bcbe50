import { isUtf8 } from 'node:buffer';
import type { Provider } from './forge-address.js';
import { scanJsonFields, type WantedFields } from './json-field-scan.js';
import { WebhookError } from './webhook-error.js';
import type { MediaType } from './webhook-headers.js';

/*
 * A webhook body before its signature is checked: strict UTF-8, JSON or a
 * `payload=` form, and the repository it names, read without building the
 * document (the repository says which app's secret checks the signature).
 */

/**
 * A webhook body, checked to be one JSON object (UTF-8, as JSON or in
 * `payload=` of a form) but not built: until its signature is checked, it
 * costs no more memory than its bytes.
 */
export interface DecodedBody {
  /** The repository the body says it is about (unverified), or null when it names none. */
  identity: RepositoryIdentity | null;
  /**
   * Exactly the bytes the forge signed, as text: the raw body, except for
   * Gitea's form encoding, whose HMAC covers the JSON inside `payload=`.
   * Decoding is strict UTF-8, so this text encodes back to the same bytes.
   */
  signed(): string;
  /**
   * The parsed JSON document (an object). Call it only once the signature
   * verified: building the document is what an unverified body must not
   * be able to make the receiver do.
   */
  payload(): Record<string, unknown>;
}

const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
const PAYLOAD = Buffer.from('payload');

/**
 * Checks a raw webhook body and reads the repository it names, without
 * parsing it; throws WebhookError (400) when it is not UTF-8, not a
 * `payload=` form where one is expected, not JSON or not a JSON object.
 */
export function decodeWebhookBody(provider: Provider, media: MediaType, raw: Uint8Array): DecodedBody {
  if (!isUtf8(raw)) throw new WebhookError('invalid_payload', 'the body is not valid UTF-8');
  const json = media === 'json' ? raw : formPayload(raw);
  if (json !== raw && !isUtf8(json)) throw new WebhookError('invalid_payload', 'the payload field is not valid UTF-8');
  const scanned = scanRepositoryIdentity(provider, json);
  if (scanned.kind === 'invalid') throw new WebhookError('invalid_payload', 'the body is not valid JSON');
  if (scanned.kind === 'not_object') throw new WebhookError('invalid_payload', 'the body must be a JSON object');

  let jsonText: string | undefined;
  let rawText: string | undefined;
  const text = () => (jsonText ??= utf8.decode(json));
  // GitHub signs the body as sent; Gitea, Forgejo and Gogs sign the JSON before form-encoding it.
  const signed = media === 'form' && provider === 'github' ? () => (rawText ??= utf8.decode(raw)) : text;
  return {
    identity: scanned.identity,
    signed,
    payload: () => parseObject(text()),
  };
}

function parseObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Not expected (the scan accepts exactly what JSON.parse accepts); if it happens, the body is at fault, not the receiver.
    throw new WebhookError('invalid_payload', 'the body is not valid JSON');
  }
  return value as Record<string, unknown>;
}

/**
 * The bytes of the one field of an `application/x-www-form-urlencoded`
 * body, which must be `payload`; empty fields (`&&`) are ignored.
 */
function formPayload(raw: Uint8Array): Uint8Array {
  let field: [number, number] | null = null;
  let fields = 0;
  for (let start = 0; start <= raw.length;) {
    let end = raw.indexOf(0x26 /* & */, start);
    if (end < 0) end = raw.length;
    if (end > start) {
      fields++;
      field = [start, end];
    }
    start = end + 1;
  }
  const refuse = () => new WebhookError('invalid_payload', 'a form-encoded body must hold exactly one field, payload=<JSON>');
  if (fields !== 1) throw refuse();
  const [start, end] = field!;
  const equals = raw.subarray(start, end).indexOf(0x3d /* = */);
  const nameEnd = equals < 0 ? end : start + equals;
  // Each byte of a name is at most 3 characters (%XX): a longer name cannot decode to "payload".
  if (nameEnd - start > 3 * PAYLOAD.length || !formDecode(raw, start, nameEnd).equals(PAYLOAD)) throw refuse();
  // A field without "=" is all name: its value is then the whole field, which is no JSON.
  return formDecode(raw, equals < 0 ? start : nameEnd + 1, end);
}

/** Form-decodes raw[start, end) to its bytes: `%XX` is a byte, `+` a space, anything else itself. */
function formDecode(raw: Uint8Array, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  let o = 0;
  for (let i = start; i < end; i++) {
    const c = raw[i]!;
    if (c === 0x25 /* % */ && i + 2 < end && hexValue(raw[i + 1]!) >= 0 && hexValue(raw[i + 2]!) >= 0) {
      out[o++] = hexValue(raw[i + 1]!) * 16 + hexValue(raw[i + 2]!);
      i += 2;
    } else {
      out[o++] = c === 0x2b /* + */ ? 0x20 : c;
    }
  }
  return out.subarray(0, o);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * What a payload says its repository is: all that is read from a body
 * before its signature is checked, to find the app (and so the secret).
 */
export interface RepositoryIdentity {
  /** `owner/name` (GitLab: `group/subgroup/name`), when given. */
  fullName: string | null;
  /** Clone, SSH and web URLs as given; matched after normalisation. */
  urls: string[];
}

const MAX_NAME = 255;
const MAX_URL = 2048;
const MAX_URLS = 8;

/** Fields naming the repository, per forge; nothing else of the unverified body is looked at. */
const FIELDS: Record<Provider, { container: string[]; fullName: string; urls: string[] }> = {
  github: { container: ['repository'], fullName: 'full_name', urls: ['clone_url', 'ssh_url', 'html_url', 'git_url'] },
  gitea: { container: ['repository'], fullName: 'full_name', urls: ['clone_url', 'ssh_url', 'html_url'] },
  gitlab: { container: ['project', 'repository'], fullName: 'path_with_namespace', urls: ['git_http_url', 'git_ssh_url', 'web_url', 'http_url', 'ssh_url', 'homepage', 'url'] },
};

/** The same fields, as the scanner of unparsed bodies wants them. */
const wanted = (f: (typeof FIELDS)[Provider]): WantedFields => ({ containers: f.container, fields: [f.fullName, ...f.urls], maxLength: Math.max(MAX_NAME, MAX_URL) });
const WANTED: Record<Provider, WantedFields> = { github: wanted(FIELDS.github), gitea: wanted(FIELDS.gitea), gitlab: wanted(FIELDS.gitlab) };

/** What reading an unparsed body found: not JSON, JSON but not an object, or the repository it names (null: none). */
export type ScannedIdentity = { kind: 'invalid' } | { kind: 'not_object' } | { kind: 'object'; identity: RepositoryIdentity | null };

/** The repository a parsed payload names, or null when it names none. */
export function repositoryIdentity(provider: Provider, payload: Record<string, unknown>): RepositoryIdentity | null {
  return identityOf(provider, (key) => {
    const container = payload[key];
    return typeof container === 'object' && container !== null && !Array.isArray(container) ? (container as Record<string, unknown>) : null;
  });
}

/**
 * The repository a JSON body names, read without parsing the body (see
 * json-field-scan.ts), which is validated as JSON on the way. Gives the
 * same identity as `repositoryIdentity` of the parsed body. `json` must be
 * valid UTF-8.
 */
export function scanRepositoryIdentity(provider: Provider, json: Uint8Array): ScannedIdentity {
  const scan = scanJsonFields(json, WANTED[provider]);
  if (scan.kind !== 'object') return scan;
  return { kind: 'object', identity: identityOf(provider, (key) => {
    const fields = scan.containers.get(key);
    return fields ? Object.fromEntries(fields) : null;
  }) };
}

function identityOf(provider: Provider, container: (key: string) => Record<string, unknown> | null): RepositoryIdentity | null {
  const fields = FIELDS[provider];
  let fullName: string | null = null;
  const urls: string[] = [];
  for (const key of fields.container) {
    const record = container(key);
    if (record === null) continue;
    const name = record[fields.fullName];
    if (fullName === null && typeof name === 'string' && name.length > 0 && name.length <= MAX_NAME) fullName = name;
    for (const field of fields.urls) {
      const url = record[field];
      if (typeof url === 'string' && url.length > 0 && url.length <= MAX_URL && !urls.includes(url) && urls.length < MAX_URLS) urls.push(url);
    }
  }
  return fullName === null && urls.length === 0 ? null : { fullName, urls };
}
