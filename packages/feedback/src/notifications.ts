import { createHmac, randomUUID } from 'node:crypto';
import type { NotifyTarget } from '@slipway/config/types';
import type { JobStore } from '@slipway/queue/job-store';
import type { JobRecord, JobState, Step, Trigger } from '@slipway/queue/job-types';
import { sendHttpRequest, type BackgroundDelivery, type HttpRequest } from './delivery.js';
import { formatDuration, jobPageUrl, shortText, type FailureKind } from './job-wording.js';

/*
 * Notifications: how a deploy ended, told to an app's `notify` targets
 * (Slack-compatible incoming webhooks, signed JSON webhooks). In reading
 * order: the Notifier, which event a target hears, the payload, the Slack
 * message made from it, the request for each kind of target, and how the
 * app's previous deploy ended (what makes a success a recovery).
 */

export interface NotifierOptions {
  delivery: BackgroundDelivery;
  /** The dashboard's public address, for the job link (see dashboardUrl). */
  dashboard: string;
}

/**
 * Tells an app's `notify` targets how a deploy ended: a failure, a
 * recovery (first success after a failure) or, for targets that ask, any
 * success. Delivered in the background; never throws, never waits.
 */
export class Notifier {
  constructor(private readonly options: NotifierOptions) {}

  /**
   * For a completed or failed job. `previous` is how the app's deploy
   * before it ended (see previousOutcome). Returns how many notifications
   * were handed to the delivery.
   */
  notify(record: JobRecord, targets: readonly NotifyTarget[], previous: 'success' | 'failure' | null, failureKind?: FailureKind): number {
    if (record.state !== 'completed' && record.state !== 'failed') return 0;
    let sent = 0;
    for (const target of targets) {
      const event = notificationEvent(record.state === 'completed' ? 'success' : 'failure', previous, target.on);
      if (!event) continue;
      const delivery = randomUUID();
      const request = notificationRequest(target, notificationPayload(record, event, { dashboard: this.options.dashboard, failureKind }), delivery);
      this.options.delivery.deliver({
        key: `notify ${delivery}`,
        target: target.type,
        what: 'notification',
        // The URL's host only: a Slack webhook's path is its secret.
        context: { job: record.id, app: record.app, event, delivery, host: hostOf(target.url) },
        send: (signal) => sendHttpRequest(request, signal),
      });
      sent++;
    }
    return sent;
  }
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '?';
  }
}

/** What a finished deploy is to a notification target. */
export type NotificationEvent = 'failure' | 'recovery' | 'success';

/**
 * The event a finished deploy sends to a target, or null when the target
 * did not ask for it. A success is a `recovery` when the app's previous
 * finished deploy failed; a target with `success` in `on` hears of
 * recoveries too (as such), since they are successes.
 */
export function notificationEvent(outcome: 'success' | 'failure', previous: 'success' | 'failure' | null, on: NotifyTarget['on']): NotificationEvent | null {
  if (outcome === 'failure') return on.includes('failure') ? 'failure' : null;
  if (previous === 'failure') return on.includes('recovery') || on.includes('success') ? 'recovery' : null;
  return on.includes('success') ? 'success' : null;
}

/** The JSON a `webhook` target receives (and what a Slack message is made from). */
export interface NotificationPayload {
  event: NotificationEvent;
  app: string;
  job: string;
  /** `success`, or for a failed job `failure` (the commit does not deploy) or `error` (Slipway could not). */
  outcome: 'success' | FailureKind;
  state: JobState;
  trigger: Trigger;
  /** Full 40-hex commit, or null for an image deploy. */
  sha: string | null;
  ref: string | null;
  /** The image that went live (success), or was to. */
  image: string | null;
  /** The commit's message, from the push; null when not known. */
  message: string | null;
  pusher: string | null;
  /** The step reached: where a failure happened. */
  step: Step;
  /** First line of the failure, or null. */
  error: string | null;
  /** From the job's start to its end, in seconds. */
  durationSeconds: number | null;
  startedAt: string | null;
  finishedAt: string | null;
  links: { job: string; compare: string | null; repository: string | null };
}

/** The payload for a finished job (completed or failed). */
export function notificationPayload(record: JobRecord, event: NotificationEvent, options: { dashboard: string; failureKind?: FailureKind }): NotificationPayload {
  const started = record.startedAt ?? record.createdAt;
  const duration = record.finishedAt ? (Date.parse(record.finishedAt) - Date.parse(started)) / 1000 : null;
  return {
    event,
    app: record.app,
    job: record.id,
    outcome: record.state === 'completed' ? 'success' : options.failureKind ?? 'failure',
    state: record.state,
    trigger: record.trigger,
    sha: record.sha,
    ref: record.ref,
    image: record.result?.image ?? record.image,
    message: record.push?.message ?? null,
    pusher: record.push?.pusher ?? null,
    step: record.step,
    error: record.error,
    durationSeconds: duration === null || Number.isNaN(duration) ? null : Math.round(duration * 10) / 10,
    startedAt: record.startedAt,
    finishedAt: record.finishedAt,
    links: { job: jobPageUrl(options.dashboard, record.id), compare: record.push?.compareUrl ?? null, repository: record.push?.repository.htmlUrl ?? null },
  };
}

/** A Slack incoming-webhook message (`text`, the fallback, and Block Kit `blocks`). */
interface SlackMessage {
  text: string;
  blocks: Array<Record<string, unknown>>;
}

const ICONS = { failure: ':x:', recovery: ':white_check_mark:', success: ':rocket:' } as const;

/**
 * `<url|label>`, the URL unable to end the link early: `<`, `>` and `|`
 * percent-encoded (a compare link is the payload's, and `x><!channel>`
 * in it would otherwise mention everyone), `&` as Slack wants it.
 */
const slackLink = (url: string, label: string) => `<${url.replace(/[<>|]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).replace(/&/g, '&amp;')}|${escape(label)}>`;

/** Slack's mrkdwn needs only these three escaped. */
const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * The message for a notification: one line saying what happened (the
 * fallback `text`, shown in alerts), and blocks with links to the job and
 * the compare view, the commit's first line and who pushed.
 */
function slackMessage(payload: NotificationPayload): SlackMessage {
  const commit = payload.sha ? payload.sha.slice(0, 7) : payload.image ?? 'image';
  const took = payload.durationSeconds === null ? null : formatDuration(payload.durationSeconds * 1000);
  const error = payload.error ? `: ${shortText(payload.error, 300)}` : '';
  const what = {
    failure: `${payload.outcome === 'error' ? 'could not deploy' : 'deploy failed'} at ${payload.step}${took ? ` after ${took}` : ''}${error}`,
    recovery: `recovered: deployed${took ? ` in ${took}` : ''}`,
    success: `deployed${took ? ` in ${took}` : ''}`,
  }[payload.event];
  const text = escape(`${payload.app} ${commit}: ${what} (job ${payload.job})`);

  const links = [slackLink(payload.links.job, `job ${payload.job}`)];
  if (payload.links.compare) links.push(slackLink(payload.links.compare, 'compare'));
  const context: string[] = [];
  if (payload.message) context.push(escape(shortText(payload.message.split('\n', 1)[0]!, 150)));
  if (payload.pusher) context.push(`pushed by ${escape(payload.pusher)}`);
  context.push(`${payload.trigger}${payload.ref ? ` on ${escape(payload.ref)}` : ''}`);
  return {
    text,
    blocks: [
      // verbatim: a URL or @here in a commit message or a build's error stays text (Slack would link it, or ping a channel).
      { type: 'section', text: { type: 'mrkdwn', text: `${ICONS[payload.event]} *${escape(payload.app)}* \`${escape(commit)}\` ${escape(what)}\n${links.join(' · ')}`, verbatim: true } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: context.join(' · '), verbatim: true }] },
    ],
  };
}

/**
 * The POST for one target. `slack`: the Slack-compatible `{text, blocks}`.
 * `webhook`: the payload as JSON, with `X-Slipway-Event`,
 * `X-Slipway-Delivery` (unique per notification; a retry repeats it) and,
 * with a secret, `X-Slipway-Signature-256: sha256=<hex>` over the body.
 */
export function notificationRequest(target: NotifyTarget, payload: NotificationPayload, delivery: string): HttpRequest {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'Slipway' };
  if (target.type === 'slack') return { method: 'POST', url: target.url, headers, body: JSON.stringify(slackMessage(payload)) };
  const body = JSON.stringify(payload);
  headers['x-slipway-event'] = payload.event;
  headers['x-slipway-delivery'] = delivery;
  if (target.secret) headers['x-slipway-signature-256'] = signature256(body, target.secret);
  return { method: 'POST', url: target.url, headers, body };
}

/** `sha256=<hex>`: HMAC-SHA256 of the exact body bytes, as GitHub signs webhooks (and as a receiver checks them). */
function signature256(body: string | Buffer, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** How many of the app's recent completed jobs, and failed ones, are looked through. */
const LOOKBACK = 50;

/**
 * How the app's deploy before `record` ended: the latest other job of the
 * app that completed or failed and finished no later than `record`
 * (superseded and cancelled ones decided nothing). Null when there is none.
 */
export async function previousOutcome(store: JobStore, record: Pick<JobRecord, 'id' | 'app' | 'finishedAt'>): Promise<'success' | 'failure' | null> {
  const until = record.finishedAt ? Date.parse(record.finishedAt) : Date.now();
  let best: JobRecord | null = null;
  // From the app's completed and failed jobs alone (each its own index): any number of superseded or cancelled jobs
  // since (a burst of pushes behind the deploy that fixed it) hides no outcome.
  const ended = await Promise.all((['completed', 'failed'] as const).map((state) => store.list({ app: record.app, state, limit: LOOKBACK })));
  for (const job of ended.flat()) {
    if (job.id === record.id || (job.state !== 'completed' && job.state !== 'failed') || !job.finishedAt) continue;
    const at = Date.parse(job.finishedAt);
    if (at > until) continue;
    if (!best || at > Date.parse(best.finishedAt!) || (at === Date.parse(best.finishedAt!) && Number(job.id) > Number(best.id))) best = job;
  }
  return best ? (best.state === 'completed' ? 'success' : 'failure') : null;
}
