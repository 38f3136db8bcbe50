import type { Logger } from '@slipway/core/logger';
import { faultOf, isSlipwayError } from '@slipway/core/slipway-error';
import type { SlipwayConfig } from '@slipway/config/types';
import type { JobStore } from '@slipway/queue/job-store';
import { FINAL_STATES, type JobRecord } from '@slipway/queue/job-types';
import { CommitStatuses, ForgeStatusSender } from './commit-status.js';
import { BackgroundDelivery, type RetryPolicy } from './delivery.js';
import { dashboardUrl, failureKind } from './job-wording.js';
import type { WorkerMetrics } from './metrics.js';
import { Notifier, previousOutcome } from './notifications.js';

export type { RetryPolicy } from './delivery.js';

/** How long the "this job's end was reported" mark is kept. */
const CLAIM_TTL_S = 7 * 24 * 3600;

/**
 * reportUnreported looks at jobs that finished this long ago at least (the
 * worker that finished one claims its report within milliseconds) ...
 */
export const UNREPORTED_AFTER_MS = 30_000;
/** ... and at most this long ago: older ends are history, not news a forge or a team still waits for. */
export const UNREPORTED_WITHIN_MS = 60 * 60_000;
/** How long close gives Redis to hand back the claims of ends it could not report. */
const HAND_BACK_MS = 1_000;

export interface DeployFeedbackOptions {
  /** `forges`, `dashboard` and each app's `notify` are read. */
  config: Pick<SlipwayConfig, 'forges' | 'dashboard' | 'apps'>;
  store: JobStore;
  logger: Logger;
  metrics: WorkerMetrics;
  /** Default DEFAULT_RETRY_POLICY. */
  retry?: Partial<RetryPolicy>;
}

/**
 * What the worker tells the outside about its jobs: commit statuses,
 * notifications and metrics. Every method returns at once and never
 * throws; deliveries run in the background, so a forge or a notification
 * target that is slow, down or refusing never delays or fails a deploy.
 */
export class DeployFeedback {
  readonly delivery: BackgroundDelivery;
  readonly statuses: CommitStatuses;
  readonly notifier: Notifier;
  private readonly work = new Set<Promise<void>>();
  /** Final statuses claimed here and not yet settled: their claim's token, handed back by close for another worker. */
  private readonly unsent = new Map<string, string>();
  private closing = false;

  constructor(private readonly options: DeployFeedbackOptions) {
    const { config, logger, metrics } = options;
    const dashboard = dashboardUrl(config.dashboard);
    this.delivery = new BackgroundDelivery({ logger, retry: options.retry, onSettled: metrics.delivery });
    this.statuses = new CommitStatuses({ sender: new ForgeStatusSender(config.forges), delivery: this.delivery, dashboard, config });
    this.notifier = new Notifier({ delivery: this.delivery, dashboard });
  }

  /**
   * A job started (state active). Its first attempt posts `running`; a
   * later one (after a lost connection or a dead worker) changes nothing
   * the commit shows.
   */
  started(record: JobRecord, attempt: number): void {
    if (attempt !== 1) return;
    this.statuses.post(record, { stillWanted: async () => (await this.options.store.get(record.id))?.state === 'active' });
  }

  /** An image was built (cache use). */
  built(app: string, build: { cachedSteps: number; totalSteps: number }): void {
    this.options.metrics.built(app, build);
  }

  /** A rollout went live (its drain). */
  rolledOut(app: string, result: { drain: { open: number } | null }): void {
    this.options.metrics.rolledOut(app, result);
  }

  /**
   * A job reached a final state; `err` is why it failed. Counts it, posts
   * its final commit status, and notifies the app's targets of a failure,
   * a recovery or a success. A job's end is reported once, however many
   * workers hear of it (see `cancelled`) or finish it.
   */
  finished(record: JobRecord, err?: unknown): void {
    this.track(this.report(record, err));
  }

  /**
   * A job was cancelled somewhere (an event on the queue's channel): a job
   * cancelled while waiting never reaches a worker, yet its commit must
   * not stay `pending`. Every worker hears it; one reports it.
   */
  cancelled(id: string): void {
    this.track((async () => {
      const record = await this.options.store.get(id);
      if (record?.state === 'cancelled') await this.report(record);
    })());
  }

  /** Resolves once everything handed over so far was delivered or given up. */
  async idle(): Promise<void> {
    while (this.work.size > 0) await Promise.all([...this.work]);
    await this.delivery.idle();
  }

  /**
   * Stops retrying; deliveries in flight get up to `graceMs`. The final
   * statuses it could not send have their claim handed back, so that
   * another worker's reportUnreported sends them, rather than the commit
   * showing "Deploying" for ever.
   */
  async close(graceMs = 2000): Promise<void> {
    this.closing = true;
    await Promise.race([Promise.all([...this.work]), new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
    await this.delivery.close(graceMs);
    const { store } = this.options;
    const handBack = Promise.all([...this.unsent].map(([id, token]) => store.deleteIfHolds(store.keys.endReported(id), token).catch(() => {})));
    await Promise.race([handBack, new Promise((resolve) => setTimeout(resolve, HAND_BACK_MS).unref())]);
  }

  /**
   * Reports the ends no one reported: jobs of `apps` that finished between
   * UNREPORTED_WITHIN_MS and UNREPORTED_AFTER_MS ago with no "reported"
   * mark (their worker died between finishing and reporting, a worker that
   * stopped handed them back, a job cancelled while no worker ran). Called
   * by the worker's minute sweep. Returns how many it took up.
   */
  async reportUnreported(apps: readonly string[], now = Date.now()): Promise<number> {
    const { store } = this.options;
    let taken = 0;
    for (const app of apps) {
      const ids = await store.finishedBetween(app, now - UNREPORTED_WITHIN_MS, now - UNREPORTED_AFTER_MS);
      if (ids.length === 0) continue;
      const pipeline = store.redis.pipeline();
      for (const id of ids) pipeline.exists(store.keys.endReported(id));
      const exists = ((await pipeline.exec()) ?? []).map(([, n]) => n === 1);
      for (const [i, id] of ids.entries()) {
        if (exists[i]) continue;
        const record = await store.get(id);
        if (!record || !FINAL_STATES.has(record.state)) continue;
        taken++;
        this.track(this.report(record));
      }
    }
    return taken;
  }

  private async report(record: JobRecord, err?: unknown): Promise<void> {
    const { store, metrics, config } = this.options;
    // Once per job, whoever reports it: every worker hears of a cancellation, and a job given up (worker_lost) may be
    // finished again by an attempt that had passed its switch, to which finish answers the state it already had.
    if (!FINAL_STATES.has(record.state)) return;
    const token = await store.claim(store.keys.endReported(record.id), CLAIM_TTL_S * 1000);
    if (token === null) return;
    const kind = record.state === 'failed' ? failureKind(record.fault ?? faultOf(err)) : undefined;
    metrics.jobFinished(record, record.state === 'failed' ? (isSlipwayError(err) ? err.code : 'internal') : undefined);
    // Not once the job was re-run: the re-run posts on the same commit and context, and a final status of this one
    // still being retried (the forge answered 502) would land over the re-run's.
    this.unsent.set(record.id, token);
    const deployedAs = await this.sameCommitJob(record);
    const posted = deployedAs ? this.statuses.post({ ...deployedAs, push: record.push }, {
      failureKind: deployedAs.state === 'failed' ? failureKind(deployedAs.fault ?? 'slipway') : undefined,
      stillWanted: async () => (await store.get(deployedAs.id))?.state === deployedAs.state,
      settled: (outcome) => {
        if (outcome === 'delivered' || !this.closing) this.unsent.delete(record.id);
      },
    }) : this.statuses.post(record, {
      failureKind: kind,
      stillWanted: async () => !(await store.get(record.id))?.retriedBy,
      // Given up or dropped because this worker is stopping: close hands the claim back; any other end is the end.
      settled: (outcome) => {
        if (outcome === 'delivered' || !this.closing) this.unsent.delete(record.id);
      },
    });
    if (!posted) this.unsent.delete(record.id);
    const targets = (Object.hasOwn(config.apps, record.app) ? config.apps[record.app]?.notify : undefined) ?? [];
    if (targets.length === 0 || (record.state !== 'completed' && record.state !== 'failed')) return;
    this.notifier.notify(record, targets, await previousOutcome(store, record), kind);
  }

  /**
   * A job superseded by one of the same commit (an operator's deploy of
   * it, its `git push` to a Slipway remote, the push's commit live already):
   * that job, as it is now, whose state the commit shows rather than "Not
   * deployed". One without a forge push of its own takes this one's, so
   * that its own statuses, the final one included, reach the commit.
   */
  private async sameCommitJob(record: JobRecord): Promise<JobRecord | null> {
    const { store } = this.options;
    if (record.state !== 'superseded' || !record.sha || !record.supersededBy || !record.push) return null;
    let by = await store.get(record.supersededBy);
    if (!by || by.sha !== record.sha) return null;
    if (!by.push) {
      await store.update(by.id, { push: record.push });
      // Ended meanwhile, its end reported without a push: what it ended as is posted here, on this job's push.
      by = (await store.get(by.id)) ?? by;
    }
    return by;
  }

  private track(promise: Promise<void>): void {
    const tracked = promise.catch((err: Error) => {
      this.options.logger.warn({ err: err.message }, 'could not report a job\'s end (statuses, notifications)');
    }).finally(() => this.work.delete(tracked));
    this.work.add(tracked);
  }
}
