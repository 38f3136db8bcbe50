import type { AppConfig } from '@slipway/config/types';
import type { Push } from '@slipway/queue/job-types';
import { classifyEvent, type IgnoreReason } from './classify-event.js';
import { decodeWebhookBody } from './decode-webhook-body.js';
import { matchApps } from './match-apps.js';
import { normalisePush } from './normalise-push.js';
import { pushIgnoreReason } from './push-ignore-reason.js';
import { readPushFields } from './read-push-fields.js';
import type { WebhookHeaders } from './read-webhook-headers.js';
import { verifySignature } from './verify-signature.js';
import type { MediaType } from './webhook-media-type.js';
import { WebhookError } from './webhook-error.js';

/** The part of an app's config a webhook decision needs. */
export type WebhookApp = Pick<AppConfig, 'name' | 'repo' | 'branch' | 'secret'>;

export interface InspectWebhookInput<A extends WebhookApp> {
  headers: WebhookHeaders;
  media: MediaType;
  body: Uint8Array;
  /** The configured apps; the same array on every call (it is indexed once). */
  apps: readonly A[];
}

export type WebhookDecision<A extends WebhookApp> =
  | { kind: 'ignored'; reason: IgnoreReason; message: string }
  /** Verified push of a branch some apps deploy: one job per app, in config order. */
  | { kind: 'push'; push: Push; apps: A[] };

/**
 * Decides what a webhook request means, in order: event header (anything but
 * a push or ping is dropped unread) → body (checked, and the repository it
 * names read without parsing it) → apps of that repository (404) →
 * signature with those apps' secrets (401; only apps whose secret verified
 * go on) → ping → the body parsed → tag, deletion → validated push (400)
 * → apps of that branch. Throws WebhookError for every refusal. No I/O.
 */
export async function inspectWebhook<A extends WebhookApp>(input: InspectWebhookInput<A>): Promise<WebhookDecision<A>> {
  const { headers } = input;
  if (headers.event === null) throw new WebhookError('missing_header', 'the event header is missing');
  const event = classifyEvent(headers.provider, headers.event);
  if (event.kind === 'ignored') return event;

  // Read without being parsed: only a body whose signature verifies is built into a document.
  const body = decodeWebhookBody(headers.provider, input.media, input.body);
  const identity = body.identity;
  if (identity === null) {
    // An organisation-level ping names no repository: there is no secret to check it with.
    if (event.kind === 'ping') return { kind: 'ignored', reason: 'ping', message: 'pong' };
    throw new WebhookError('missing_field', 'the payload names no repository');
  }
  const candidates = matchApps(input.apps, identity);
  if (candidates.length === 0) throw new WebhookError('no_app', 'no app is configured for this repository');

  const verified = await appsWithValidSignature(headers, body.signed(), candidates);
  if (event.kind === 'ping') return { kind: 'ignored', reason: 'ping', message: 'pong' };

  const fields = readPushFields(headers.provider, body.payload());
  const ignored = pushIgnoreReason(fields);
  if (ignored) return { kind: 'ignored', ...ignored };
  const push = normalisePush(headers.provider, headers.delivery, fields);
  const apps = matchApps(verified, identity, push.ref);
  if (apps.length === 0) {
    return { kind: 'ignored', reason: 'other_branch', message: `no app deploys branch ${JSON.stringify(push.branch)} of this repository` };
  }
  return { kind: 'push', push, apps };
}

async function appsWithValidSignature<A extends WebhookApp>(headers: WebhookHeaders, signed: string, candidates: A[]): Promise<A[]> {
  if (headers.sha1Only) {
    throw new WebhookError('missing_signature', 'only the SHA-1 X-Hub-Signature was sent; X-Hub-Signature-256 is required');
  }
  if (headers.credential === null) {
    throw new WebhookError('missing_signature', headers.provider === 'gitlab' ? 'the X-Gitlab-Token header is missing' : 'the signature header is missing');
  }
  const secrets = [...new Set(candidates.map((app) => app.secret).filter((s): s is string => typeof s === 'string' && s !== ''))];
  if (secrets.length === 0) throw new WebhookError('bad_signature', 'no webhook secret is configured for the apps of this repository');
  const valid = new Set<string>();
  for (const secret of secrets) {
    if (await verifySignature(headers, signed, secret)) valid.add(secret);
  }
  const verified = candidates.filter((app) => app.secret !== undefined && valid.has(app.secret));
  if (verified.length === 0) {
    throw new WebhookError('bad_signature', headers.provider === 'gitlab' ? 'the token does not match' : 'the signature does not match');
  }
  return verified;
}
