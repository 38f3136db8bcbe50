import { randomUUID } from 'node:crypto';
import type { Logger } from '@slipway/core/logger';
import { faultOf, isSlipwayError, type Fault } from '@slipway/core/slipway-error';
import type { SlipwayConfig } from '@slipway/config/types';
import type { JobStore } from '@slipway/queue/job-store';
import { FINAL_STATES, type JobRecord } from '@slipway/queue/job-types';
import { CommitStatuses, ForgeStatusSender } from './commit-status.js';
import { BackgroundDelivery, type DeliveryOutcome, type RetryPolicy } from './delivery.js';
import { dashboardUrl, failureKind, type FailureKind } from './job-wording.js';
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
/** A job's end-reported mark once its worker stopped with the final status unsent: the next sweep posts the status. */
const STATUS_UNSENT = 'status-unsent';

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
/** What kind of failure a failed job's status tells (its recorded fault, else `fault`); undefined for any other end. */
function failureKindOf(record: JobRecord, fault: Fault = 'slipway'): FailureKind | undefined {
  return record.state === 'failed' ? failureKind(record.fault ?? fault) : undefined;
}

export class DeployFeedback {
  /** Commit statuses' requests. */
  readonly delivery: BackgroundDelivery;
  /** Notifications' own requests: a forge that hangs does not hold a failure's notification behind its statuses, nor the reverse. */
  readonly notifications: BackgroundDelivery;
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
    this.notifications = new BackgroundDelivery({ logger, retry: options.retry, onSettled: metrics.delivery });
    this.statuses = new CommitStatuses({ sender: new ForgeStatusSender(config.forges), delivery: this.delivery, dashboard, config });
    this.notifier = new Notifier({ delivery: this.notifications, dashboard });
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
    await Promise.all([this.delivery.idle(), this.notifications.idle()]);
  }

  /**
   * Stops retrying; deliveries in flight get up to `graceMs`. The final
   * statuses it could not send are handed back (their job's mark says
   * STATUS_UNSENT), so that another worker's reportUnreported sends them,
   * and only them, rather than the commit showing "Deploying" for ever.
   */
  async close(graceMs = 2000): Promise<void> {
    this.closing = true;
    await Promise.race([Promise.all([...this.work]), new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
    await Promise.all([this.delivery.close(graceMs), this.notifications.close(graceMs)]);
    const { store } = this.options;
    const handBack = Promise.all([...this.unsent].map(([id, token]) =>
      store.replaceIfHolds(store.keys.endReported(id), token, STATUS_UNSENT).catch(() => {})));
    await Promise.race([handBack, new Promise((resolve) => setTimeout(resolve, HAND_BACK_MS).unref())]);
  }

  /**
   * Reports the ends no one reported: jobs of `apps` that finished between
   * UNREPORTED_WITHIN_MS and UNREPORTED_AFTER_MS ago with no "reported"
   * mark (their worker died between finishing and reporting, a job
   * cancelled while no worker ran), and posts the final statuses a worker
   * that stopped handed back (only the status: its notifications went).
   * Called by the worker's minute sweep. Returns how many it took up.
   */
  async reportUnreported(apps: readonly string[], now = Date.now()): Promise<number> {
    const { store } = this.options;
    let taken = 0;
    for (const app of apps) {
      const ids = await store.finishedBetween(app, now - UNREPORTED_WITHIN_MS, now - UNREPORTED_AFTER_MS);
      if (ids.length === 0) continue;
      const marks = await store.redis.mget(...ids.map((id) => store.keys.endReported(id)));
      for (const [i, id] of ids.entries()) {
        const mark = marks[i] ?? null;
        if (mark !== null && mark !== STATUS_UNSENT) continue;
        const record = await store.get(id);
        if (!record || !FINAL_STATES.has(record.state)) continue;
        if (mark === null) {
          taken++;
          this.track(this.report(record));
          continue;
        }
        const token = randomUUID();
        if (!(await store.replaceIfHolds(store.keys.endReported(id), STATUS_UNSENT, token))) continue;
        taken++;
        this.track(this.postFinalStatus(record, token));
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
    const kind = failureKindOf(record, faultOf(err));
    metrics.jobFinished(record, record.state === 'failed' ? (isSlipwayError(err) ? err.code : 'internal') : undefined);
    await this.postFinalStatus(record, token, kind);
    const targets = (Object.hasOwn(config.apps, record.app) ? config.apps[record.app]?.notify : undefined) ?? [];
    if (targets.length === 0 || (record.state !== 'completed' && record.state !== 'failed')) return;
    this.notifier.notify(record, targets, await previousOutcome(store, record), kind);
  }

  /**
   * The job's final commit status, under its claim `token` (kept in
   * `unsent` until settled, for close to hand back).
   */
  private async postFinalStatus(record: JobRecord, token: string, kind = failureKindOf(record)): Promise<void> {
    const { store } = this.options;
    const deployedAs = await this.sameCommitJob(record);
    if (deployedAs === 'its-own') return;
    // Given up or dropped because this worker is stopping: close hands it back; any other end is the end.
    const settled = (outcome: DeliveryOutcome) => {
      if (outcome === 'delivered' || !this.closing) this.unsent.delete(record.id);
    };
    const shown = deployedAs ?? record;
    this.unsent.set(record.id, token);
    const posted = this.statuses.post({ ...shown, push: record.push }, {
      failureKind: shown === record ? kind : failureKindOf(shown),
      // Not once the job shown was re-run: the re-run posts on the same commit and context, and a final status of this
      // one still being retried (the forge answered 502) would land over the re-run's.
      stillWanted: async () => !(await store.get(shown.id))?.retriedBy,
      settled,
    });
    if (!posted) this.unsent.delete(record.id);
  }

  /**
   * A job superseded by one of the same commit (an operator's deploy of
   * it, its `git push` to a Slipway remote, the push's commit live
   * already), whose state the commit shows rather than "Not deployed": the
   * job when it has ended (and was not re-run); 'its-own' while it has not
   * (it posts its own statuses, this push's taken when it had none), or
   * once re-run (the re-run posts); null for any other job.
   */
  private async sameCommitJob(record: JobRecord): Promise<JobRecord | 'its-own' | null> {
    const { store } = this.options;
    if (record.state !== 'superseded' || !record.sha || !record.supersededBy || !record.push) return null;
    let by = await store.get(record.supersededBy);
    if (!by || by.sha !== record.sha) return null;
    // Re-run already (its re-run copied its push: none): the re-run is the job the commit waits on.
    const rerun = by.retriedBy ? await store.get(by.retriedBy) : null;
    if (rerun?.sha === record.sha) by = rerun;
    if (!by.push) {
      await store.update(by.id, { push: record.push });
      // Ended meanwhile, its end reported without a push: what it ended as is posted here, on this job's push.
      by = (await store.get(by.id)) ?? by;
    }
    return FINAL_STATES.has(by.state) && !by.retriedBy ? by : 'its-own';
  }

  private track(promise: Promise<void>): void {
    const tracked = promise.catch((err: Error) => {
      this.options.logger.warn({ err: err.message }, 'could not report a job\'s end (statuses, notifications)');
    }).finally(() => this.work.delete(tracked));
    this.work.add(tracked);
  }
}
