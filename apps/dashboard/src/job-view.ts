import type { JobRecord } from '@slipway/queue/job-types';

/** A job as the dashboard's API shows it: the record without server paths, with the push's message and author. */
export interface JobView {
  id: string;
  app: string;
  sha: string | null;
  ref: string | null;
  image: string | null;
  trigger: JobRecord['trigger'];
  state: JobRecord['state'];
  step: JobRecord['step'];
  steps: JobRecord['steps'];
  attempts: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  supersededBy: string | null;
  retriedBy: string | null;
  retryOf: string | null;
  result: JobRecord['result'];
  commit: { message: string | null; pusher: string | null; compareUrl: string | null } | null;
}

export function jobView(record: JobRecord): JobView {
  const push = record.push;
  return {
    id: record.id, app: record.app, sha: record.sha, ref: record.ref, image: record.image,
    trigger: record.trigger, state: record.state, step: record.step, steps: record.steps ?? [],
    attempts: record.attempts, createdAt: record.createdAt, startedAt: record.startedAt, finishedAt: record.finishedAt,
    error: record.error, supersededBy: record.supersededBy ?? null, retriedBy: record.retriedBy ?? null,
    retryOf: record.retryOf ?? null, result: record.result ?? null,
    commit: push ? { message: push.message?.split('\n', 1)[0]?.slice(0, 300) ?? null, pusher: push.pusher, compareUrl: safeUrl(push.compareUrl) } : null,
  };
}

/** Only http(s) links reach a page: a `javascript:` URL in a webhook must never become a link. */
function safeUrl(url: string | null): string | null {
  return url && /^https?:\/\//i.test(url) ? url : null;
}
