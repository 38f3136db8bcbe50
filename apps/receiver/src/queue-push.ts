import type { Logger } from '@slipway/core/logger';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import type { Push } from '@slipway/queue/job-types';

/** One queued job: what `POST /hooks/*` answers per matched app. */
export interface QueuedJob {
  job: string;
  app: string;
}

export type QueuePushResult =
  | { kind: 'queued'; jobs: QueuedJob[] }
  /** The delivery id was seen before; `jobs` is what the first delivery queued, when known. */
  | { kind: 'duplicate'; delivery: string; jobs: QueuedJob[] | null };

/**
 * Queues one job per app for a verified push, once per delivery id: the id
 * is claimed first (so two concurrent redeliveries queue once), and what was
 * queued is remembered for `retentionSeconds` (recorded without delaying the answer). If queuing fails the claim is
 * released, so the forge's retry is not mistaken for a duplicate.
 */
export async function queuePush(queue: DeployQueue, push: Push & { delivery: string }, apps: readonly string[], retentionSeconds: number, log: Logger): Promise<QueuePushResult> {
  const previous = await queue.claimDelivery(push.provider, push.delivery, retentionSeconds);
  if (previous !== null) return { kind: 'duplicate', delivery: push.delivery, jobs: parseOutcome(previous) };

  const jobs: QueuedJob[] = [];
  try {
    for (const app of apps) {
      const record = await queue.enqueue({ app, sha: push.sha, ref: push.branch, image: null, trigger: 'webhook', push });
      jobs.push({ job: record.id, app });
    }
  } catch (err) {
    await queue.releaseDelivery(push.provider, push.delivery);
    throw err;
  }
  // Not awaited: the answer need not wait for it. The command is issued now, on the same
  // connection, so a redelivery's claim (sent later) still sees it. If it fails, the jobs
  // are queued and the claim stands as "pending": redeliveries are still duplicates.
  queue.settleDelivery(push.provider, push.delivery, retentionSeconds, JSON.stringify(jobs)).catch((err: Error) => {
    log.warn({ err: err.message }, 'could not record what the delivery queued');
  });
  return { kind: 'queued', jobs };
}

function parseOutcome(text: string): QueuedJob[] | null {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? (value as QueuedJob[]) : null;
  } catch {
    return null;
  }
}
