import type { Server } from 'node:http';
import type { Logger } from '@slipway/core/logger';
import type { SlipwayConfig } from '@slipway/config/types';
import type { JobStore } from '@slipway/queue/job-store';
import type { JobState, Push } from '@slipway/queue/job-types';
import { CommitStatuses, ForgeStatusSender } from './commit-status.js';
import { BackgroundDelivery, type RetryPolicy } from './delivery.js';
import { dashboardUrl, failureKind } from './job-wording.js';
import { ReceiverMetrics, serveMetrics } from './metrics.js';

/** How long commit statuses still in flight get when the receiver stops. */
export const STATUS_GRACE_MS = 2_000;

export interface ReceiverFeedbackOptions {
  /** `forges` (tokens, API addresses), `dashboard` (status links) and each app's `repo` are read. */
  config: Pick<SlipwayConfig, 'forges' | 'dashboard' | 'apps'>;
  /** The deploy queue the receiver queues on: its job records say whether a job still waits. */
  queue: { readonly store: JobStore };
  logger: Logger;
  /** Default DEFAULT_RETRY_POLICY. */
  retry?: Partial<RetryPolicy>;
}

/**
 * The receiver's part of the feedback: its metrics, and the `pending`
 * commit status of each job it queues from a forge with a token. Statuses
 * go out after the answer, in the background: a slow or dead forge never
 * slows a webhook. A `pending` not yet delivered when the job has started
 * is dropped, so it never overwrites what the worker posted since; one
 * delivered while the job started or ended is followed by what the job
 * is now.
 */
export class ReceiverFeedback {
  /** Webhooks by provider and outcome, and the statuses posted: for createReceiver's `metrics`. */
  readonly metrics = new ReceiverMetrics();
  private readonly delivery: BackgroundDelivery;
  private readonly statuses: CommitStatuses;

  constructor(private readonly options: ReceiverFeedbackOptions) {
    const { config, logger } = options;
    this.delivery = new BackgroundDelivery({ logger, retry: options.retry, onSettled: this.metrics.delivery });
    this.statuses = new CommitStatuses({ sender: new ForgeStatusSender(config.forges), delivery: this.delivery, dashboard: dashboardUrl(config.dashboard), config });
  }

  /** For createReceiver's `onQueued`: posts `pending` for each job, in the background. Returns at once; never throws. */
  readonly onQueued = (push: Push, jobs: ReadonlyArray<{ job: string; app: string }>): void => {
    this.statuses.queued(push, jobs, { stillQueued: (id) => this.stillQueued(id), delivered: (id) => void this.followUp(id, 'waiting') });
  };

  /**
   * Serves `GET /metrics` on `address` (`host:port`), on a listener of its
   * own: the webhook port faces the forges, often the internet. Null when
   * the address is taken (see serveMetrics).
   */
  serveMetrics(address: string): Promise<Server | null> {
    return serveMetrics(this.metrics.registry, address, this.options.logger, 'receiver');
  }

  /** Resolves when every status handed over was delivered or given up. */
  idle(): Promise<void> {
    return this.delivery.idle();
  }

  /** Stops retrying; statuses in flight get up to `graceMs` (default STATUS_GRACE_MS). */
  close(graceMs = STATUS_GRACE_MS): Promise<void> {
    return this.delivery.close(graceMs);
  }

  private async stillQueued(id: string): Promise<boolean> {
    const record = await this.options.queue.store.get(id);
    return record?.state === 'waiting' && record.startedAt === null;
  }

  /**
   * After a status the receiver posted was delivered: the worker may have
   * posted its own at the same moment (`running` as it took the job, its
   * final status when the job ended within the round trip), and the forge
   * may have taken the two in either order. Whatever the job is now goes
   * again, and is followed in turn, until what was delivered last is what
   * the job is: the commit never says "Queued" through a deploy, or
   * "Deploying" after it ended. Any status the worker posts after this
   * read is sent after this one was applied, so it lands last. At most
   * two more statuses per job (running, then the final one).
   */
  private async followUp(id: string, delivered: JobState): Promise<void> {
    const { store } = this.options.queue;
    const record = await store.get(id).catch(() => null);
    // A final state never changes, so once one was delivered this ends here.
    if (!record || record.state === delivered || record.state === 'waiting') return;
    const state = record.state;
    this.statuses.post(record, {
      failureKind: state === 'failed' ? failureKind(record.fault ?? 'slipway') : undefined,
      // A running job that ended meanwhile is followed by its end instead; a re-run job's statuses are the re-run's.
      stillWanted: async () => {
        const now = await store.get(id);
        return now?.state === state && !now.retriedBy;
      },
      delivered: () => void this.followUp(id, state),
    });
  }
}
