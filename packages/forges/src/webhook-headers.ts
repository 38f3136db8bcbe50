import type { Provider } from './forge-address.js';
import { WebhookError } from './webhook-error.js';

/*
 * What a webhook request's headers say, read before a byte of its body:
 * the event, the delivery id, the signature or token, how the body is
 * encoded, and whether the event can deploy at all.
 */

/** Request headers, names in lower case; an array when a header came more than once (Node's `headersDistinct`). */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Which forge dialect sent a request to `/hooks/gitea`, judged by its headers. */
export type Dialect = 'github' | 'gitea' | 'forgejo' | 'gogs' | 'gitlab';

export interface WebhookHeaders {
  provider: Provider;
  dialect: Dialect;
  /** `push`, `ping`, `Push Hook`…; null when absent. */
  event: string | null;
  /** The forge's id for this delivery, kept across redeliveries; null when absent. */
  delivery: string | null;
  /**
   * The signature (GitHub `sha256=<hex>`, Gitea `<hex>`) or GitLab token.
   * Never log it: it is secret material, or derived from it.
   */
  credential: string | null;
  /** GitHub sent only the SHA-1 `X-Hub-Signature`, which is not accepted. */
  sha1Only: boolean;
}

const EVENT = /^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$/;
/** UUIDs in practice; anything else this tame is accepted, as it ends up in a Redis key and logs. */
const DELIVERY = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** Generous bound for a credential header; real ones are 64–71 characters (tokens may be longer). */
const MAX_CREDENTIAL = 1024;

/** Gitea's family, newest spelling first: Forgejo sends all three, Gitea two, Gogs one. */
const GITEA_FAMILY = ['forgejo', 'gitea', 'gogs'] as const;

/**
 * Reads the event, delivery id and signature/token of a webhook request.
 * A duplicated webhook header is refused (400): two signatures or two
 * delivery ids leave no honest way to pick one.
 */
export function readWebhookHeaders(provider: Provider, headers: HeaderBag): WebhookHeaders {
  refuseOtherForges(provider, headers);
  switch (provider) {
    case 'github': {
      const signature = one(headers, 'x-hub-signature-256', MAX_CREDENTIAL);
      return {
        provider,
        dialect: 'github',
        event: checked(one(headers, 'x-github-event'), EVENT, 'X-GitHub-Event'),
        delivery: checked(one(headers, 'x-github-delivery'), DELIVERY, 'X-GitHub-Delivery'),
        credential: signature,
        sha1Only: signature === null && one(headers, 'x-hub-signature', MAX_CREDENTIAL) !== null,
      };
    }
    case 'gitea': {
      const present = GITEA_FAMILY.filter((d) => headers[`x-${d}-event`] !== undefined || headers[`x-${d}-signature`] !== undefined || headers[`x-${d}-delivery`] !== undefined);
      return {
        provider,
        dialect: present[0] ?? 'gitea',
        event: checked(agreed(headers, 'event'), EVENT, 'X-Gitea-Event'),
        delivery: checked(agreed(headers, 'delivery'), DELIVERY, 'X-Gitea-Delivery'),
        credential: agreed(headers, 'signature', MAX_CREDENTIAL),
        sha1Only: false,
      };
    }
    case 'gitlab': {
      // Idempotency-Key (GitLab 17.4+) is the one id GitLab keeps across its retries; older
      // versions only send X-Gitlab-Event-UUID.
      const delivery = one(headers, 'idempotency-key') ?? one(headers, 'x-gitlab-event-uuid');
      return {
        provider,
        dialect: 'gitlab',
        event: checked(one(headers, 'x-gitlab-event'), EVENT, 'X-Gitlab-Event'),
        delivery: checked(delivery, DELIVERY, 'X-Gitlab-Event-UUID'),
        credential: one(headers, 'x-gitlab-token', MAX_CREDENTIAL),
        sha1Only: false,
      };
    }
  }
}

/** The event headers of Gitea and its kin (Forgejo, Gogs): one of them comes with every webhook they send. */
const GITEA_EVENT = ['x-gitea-event', 'x-gogs-event', 'x-forgejo-event'];

/** Event headers only another forge sends (Gitea sends GitHub's too, for compatibility, and verifies as one). */
const OTHER_FORGES_EVENT: Record<Provider, readonly string[]> = {
  github: ['x-gitea-event', 'x-gogs-event', 'x-forgejo-event', 'x-gitlab-event'],
  gitea: ['x-gitlab-event'],
  gitlab: ['x-github-event', 'x-gitea-event', 'x-gogs-event', 'x-forgejo-event'],
};

/**
 * A webhook sent to another forge's endpoint is refused: the endpoint
 * decides whose token its commit statuses carry, and where to.
 */
function refuseOtherForges(provider: Provider, headers: HeaderBag): void {
  // GitHub's event header alone (none of Gitea's own, which Gitea always sends beside it) is GitHub's webhook.
  const githubAlone = provider === 'gitea' && headers['x-github-event'] !== undefined && !GITEA_EVENT.some((name) => headers[name] !== undefined);
  const foreign = githubAlone ? 'x-github-event' : OTHER_FORGES_EVENT[provider].find((name) => headers[name] !== undefined);
  if (!foreign) return;
  const endpoint = foreign === 'x-gitlab-event' ? 'gitlab' : foreign === 'x-github-event' ? 'github' : 'gitea';
  throw new WebhookError('bad_header', `a webhook with ${foreign} was sent to /hooks/${provider}: send it to /hooks/${endpoint}`);
}

/** The one value of a header, null when absent; a repeated header is an error. */
function one(headers: HeaderBag, name: string, maxLength = 256): string | null {
  const value = headers[name];
  if (value === undefined) return null;
  const values = typeof value === 'string' ? [value] : value;
  if (values.length === 0) return null;
  if (values.length > 1) throw new WebhookError('bad_header', `header ${name} was sent ${values.length} times`);
  const text = values[0]!.trim();
  if (text.length > maxLength) throw new WebhookError('bad_header', `header ${name} is too long`);
  return text === '' ? null : text;
}

/** Gitea, Forgejo and Gogs spell the same header three ways; all that are present must agree. */
function agreed(headers: HeaderBag, what: 'event' | 'delivery' | 'signature', maxLength?: number): string | null {
  const values = GITEA_FAMILY.map((d) => one(headers, `x-${d}-${what}`, maxLength)).filter((v): v is string => v !== null);
  if (new Set(values).size > 1) {
    // A signature mismatch is an authentication failure, the rest are malformed requests.
    if (what === 'signature') throw new WebhookError('bad_signature', 'the X-Forgejo/X-Gitea/X-Gogs signatures disagree');
    throw new WebhookError('bad_header', `the X-Forgejo/X-Gitea/X-Gogs ${what} headers disagree`);
  }
  return values[0] ?? null;
}

function checked(value: string | null, pattern: RegExp, name: string): string | null {
  if (value !== null && !pattern.test(value)) throw new WebhookError('bad_header', `header ${name} is malformed`);
  return value;
}

/** How a webhook body is encoded: raw JSON, or a form with the JSON in its `payload` field. */
export type MediaType = 'json' | 'form';

/**
 * Reads Content-Type. JSON from every forge; the form encoding only from
 * GitHub and Gitea/Forgejo/Gogs, which can be set to send it. Anything else
 * is 415 before the body is read.
 */
export function webhookMediaType(provider: Provider, header: string | readonly string[] | undefined): MediaType {
  if (header === undefined || (typeof header !== 'string' && header.length === 0)) {
    throw new WebhookError('unsupported_media_type', 'Content-Type is missing; expected application/json');
  }
  if (typeof header !== 'string' && header.length > 1) {
    throw new WebhookError('unsupported_media_type', 'Content-Type was sent more than once');
  }
  const value = (typeof header === 'string' ? header : header[0]!).toLowerCase();
  const [type = '', ...params] = value.split(';').map((part) => part.trim());
  for (const param of params) {
    const [name, raw = ''] = param.split('=', 2).map((s) => s.trim());
    // The body is decoded as UTF-8 (signatures are over its bytes); another charset cannot be honoured.
    if (name === 'charset' && raw.replace(/^"|"$/g, '') !== 'utf-8' && raw.replace(/^"|"$/g, '') !== 'utf8') {
      throw new WebhookError('unsupported_media_type', 'only the UTF-8 charset is accepted');
    }
  }
  if (type === 'application/json') return 'json';
  if (type === 'application/x-www-form-urlencoded' && provider !== 'gitlab') return 'form';
  const accepted = provider === 'gitlab' ? 'application/json' : 'application/json or application/x-www-form-urlencoded';
  throw new WebhookError('unsupported_media_type', `Content-Type must be ${accepted}`);
}

/**
 * Refuses a compressed body (415, before it is read): the signature is over
 * the bytes sent, and no forge compresses its webhooks; read as they are, a
 * gzip body would be refused as invalid UTF-8, or a non-push event
 * acknowledged unread. `identity` is no encoding.
 */
export function checkContentEncoding(header: readonly string[] | undefined): void {
  const codings = (header ?? []).flatMap((value) => value.split(',')).map((coding) => coding.trim().toLowerCase()).filter((coding) => coding !== '' && coding !== 'identity');
  if (codings.length > 0) {
    throw new WebhookError('unsupported_media_type', `Content-Encoding ${JSON.stringify(codings.join(', ').slice(0, 64))} is not accepted; send the body uncompressed`);
  }
}

/** Why a webhook was acknowledged without queuing anything. */
export type IgnoreReason = 'ping' | 'event' | 'tag' | 'branch_deletion' | 'other_ref' | 'other_branch';

export type EventKind =
  | { kind: 'push' }
  | { kind: 'ping' }
  | { kind: 'ignored'; reason: IgnoreReason; message: string };

const PUSH: Record<Provider, string> = { github: 'push', gitea: 'push', gitlab: 'Push Hook' };

/**
 * Sorts a request by its event header alone, before the body is parsed:
 * pushes go on, pings are answered once verified, everything else is
 * acknowledged and dropped (the body is never looked at).
 */
export function classifyEvent(provider: Provider, event: string): EventKind {
  if (event === PUSH[provider]) return { kind: 'push' };
  if (provider === 'github' && event === 'ping') return { kind: 'ping' };
  if (provider === 'gitlab' && event === 'Tag Push Hook') return { kind: 'ignored', reason: 'tag', message: 'tag pushes do not deploy' };
  return { kind: 'ignored', reason: 'event', message: `${JSON.stringify(event)} events do not deploy; only pushes do` };
}
