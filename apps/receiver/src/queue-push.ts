import type { DeployQueue } from '@slipway/queue/deploy-queue';
import type { Push } from '@slipway/queue/job-types';

/** One queued job: what `POST /hooks/*` answers per matched app. */
export interface QueuedJob {
  job: string;
  app: string;
}

export type QueuePushResult =
  | { kind: 'queued'; jobs: QueuedJob[] }
  /** The delivery id, or this commit for these apps, was seen before; `jobs` is what was queued then, when known. */
  | { kind: 'duplicate'; delivery: string; jobs: QueuedJob[] | null }
  /** Every app already runs this commit or a newer one (and the push was not forced). */
  | { kind: 'stale'; apps: string[] };

/**
 * Queues one job per app for a verified push, once per delivery id: the
 * claim of the id, the job records and what they are are written in one
 * round trip (so two concurrent redeliveries queue once, and a redelivery
 * days later still names the jobs), then the jobs go to BullMQ. If queuing
 * fails the claim is dropped, so the forge's retry is not mistaken for a
 * duplicate. The delivery id is a header the signature does not cover, so
 * the same commit for the same app is queued once per retention window
 * too, and a commit already live, or older than what is, not at all
 * (unless the push was forced): a captured body sent again cannot roll an
 * app back.
 */
export async function queuePush(queue: DeployQueue, push: Push & { delivery: string }, apps: readonly string[], retentionSeconds: number): Promise<QueuePushResult> {
  const requests = apps.map((app) => ({ app, sha: push.sha, ref: push.branch, image: null, trigger: 'webhook' as const, push }));
  const { records, previous, skipped } = await queue.enqueueMany(requests, { provider: push.provider, id: push.delivery, ttlSeconds: retentionSeconds, guard: true });
  if (previous !== null) return { kind: 'duplicate', delivery: push.delivery, jobs: parseOutcome(previous) };
  if (records.length > 0) return { kind: 'queued', jobs: records.map((r) => ({ job: r.id, app: r.app })) };
  const replayed = skipped.filter((s) => s.reason === 'duplicate').map((s) => ({ job: s.job!, app: s.app }));
  if (replayed.length > 0) return { kind: 'duplicate', delivery: push.delivery, jobs: replayed };
  return { kind: 'stale', apps: skipped.map((s) => s.app) };
}

function parseOutcome(text: string): QueuedJob[] | null {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? (value as QueuedJob[]) : null;
  } catch {
    return null;
  }
}
