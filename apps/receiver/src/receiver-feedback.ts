import type { Logger } from '@slipway/core/logger';
import type { SlipwayConfig } from '@slipway/config/types';
import { BackgroundDelivery } from '@slipway/feedback/background-delivery';
import { CommitStatuses } from '@slipway/feedback/commit-statuses';
import { dashboardUrl } from '@slipway/feedback/dashboard-url';
import { ForgeStatusSender } from '@slipway/feedback/forge-status-sender';
import { ReceiverMetrics } from '@slipway/feedback/receiver-metrics';
import type { RetryPolicy } from '@slipway/feedback/retry-policy';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import type { Push } from '@slipway/queue/job-types';
import type { QueuedJob } from './queue-push.js';

/** How long commit statuses still in flight get when the receiver stops. */
export const STATUS_GRACE_MS = 2_000;

export interface ReceiverFeedback {
  /** For createReceiver's `metrics`. */
  metrics: ReceiverMetrics;
  /** For createReceiver's `onQueued`: posts `pending` for each job, in the background. */
  onQueued: (push: Push, jobs: readonly QueuedJob[]) => void;
  /** Resolves when every status handed over was delivered or given up. */
  idle(): Promise<void>;
  close(graceMs?: number): Promise<void>;
}

/**
 * The receiver's part of the feedback: its metrics, and the `pending`
 * commit status of each job it queues from a forge with a token. Statuses
 * go out after the answer, in the background: a slow or dead forge never
 * slows a webhook. A `pending` not yet delivered when the job has started
 * is dropped, so it never overwrites what the worker posted since.
 */
export function createReceiverFeedback(options: { config: Pick<SlipwayConfig, 'forges' | 'dashboard' | 'apps'>; queue: DeployQueue; logger: Logger; retry?: Partial<RetryPolicy> }): ReceiverFeedback {
  const { config, queue, logger } = options;
  const metrics = new ReceiverMetrics();
  const delivery = new BackgroundDelivery({ logger, retry: options.retry, onSettled: metrics.delivery });
  const statuses = new CommitStatuses({ sender: new ForgeStatusSender(config.forges), delivery, dashboard: dashboardUrl(config.dashboard), config });
  const stillQueued = async (id: string) => {
    const record = await queue.store.get(id);
    return record?.state === 'waiting' && record.startedAt === null;
  };
  return {
    metrics,
    onQueued: (push, jobs) => statuses.queued(push, jobs, stillQueued),
    idle: () => delivery.idle(),
    close: (graceMs = STATUS_GRACE_MS) => delivery.close(graceMs),
  };
}
