import type { Provider } from './provider.js';
import { WebhookError } from './webhook-error.js';

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
