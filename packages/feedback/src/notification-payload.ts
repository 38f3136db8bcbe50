import type { JobRecord, JobState, Step, Trigger } from '@slipway/queue/job-types';
import type { FailureKind } from './failure-kind.js';
import { jobPageUrl } from './job-page-url.js';
import type { NotificationEvent } from './notification-event.js';

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
