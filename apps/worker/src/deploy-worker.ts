import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'bullmq';
import Docker from 'dockerode';
import type { Logger } from '@slipway/core/logger';
import { dockerConnection } from '@slipway/core/docker';
import { configSecrets } from '@slipway/config/load-config';
import type { SlipwayConfig } from '@slipway/config/types';
import { DeployFeedback, type RetryPolicy } from '@slipway/feedback/deploy-feedback';
import { WorkerMetrics } from '@slipway/feedback/metrics';
import { JobStore } from '@slipway/queue/job-store';
import { SlipwayError } from '@slipway/core/slipway-error';
import { bullJobId, DeployQueue, QUEUE_NAME, STALLED_OUT } from '@slipway/queue/deploy-queue';
import { createEtcdClient } from '@slipway/etcd/client';
import { connectRedis } from '@slipway/queue/redis';
import { type DeployContext, processDeploy, settleGivenUp, TakenOver } from './process-deploy.js';
import { sweepLeftovers } from './leftovers.js';
import { currentRelease } from '@slipway/rollout/release-store';
import { managerClient } from '@slipway/rollout/swarm';

/** BullMQ timing: a killed worker's job is taken up again within lock + stalled interval (11 s), well inside 15 s. */
export const LOCK_DURATION_MS = 8_000;
export const STALLED_INTERVAL_MS = 3_000;
/** Times a job may stall (its worker died) and be taken up again; once more, it fails (worker_lost). */
export const MAX_STALLED_COUNT = 2;
/** SIGTERM waits this long for the running deploys before leaving them to another worker. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 120_000;
/** Past the grace, how long the running deploys have to stop at their next safe point before the worker disconnects anyway. */
const STOP_AT_SAFE_POINT_MS = 30_000;

export interface DeployWorkerOptions {
  config: SlipwayConfig;
  logger: Logger;
  /** Default: `worker.concurrency` from the config. */
  concurrency?: number;
  /** How commit statuses and notifications are retried. Default DEFAULT_RETRY_POLICY. */
  feedbackRetry?: Partial<RetryPolicy>;
  /** See {@link ABANDONED_AFTER_MS}; tests shorten it. */
  abandonedAfterMs?: number;
  /** See ETCD_WAIT_MS (process-deploy.ts); tests shorten it. */
  etcdWaitMs?: number;
}

/** How often the worker sweeps the whole job history for retention (and once at start). */
const HISTORY_SWEEP_INTERVAL_MS = 60 * 60 * 1000;
/** How often the worker looks for jobs whose record was written and whose BullMQ job never was (see DeployQueue.repairOrphans). */
const ORPHAN_SWEEP_INTERVAL_MS = 60 * 1000;
/**
 * How long after BullMQ gave a job up (its stalls past MAX_STALLED_COUNT) a
 * record still `active` is taken for one whose give-up was lost (the worker
 * that saw it stopped, or Redis refused its write), and is settled by the
 * next sweep: longer than a give-up takes (its lease wait and clean-up).
 */
export const ABANDONED_AFTER_MS = 5 * 60_000;

export interface DeployWorker {
  /** Resolves once the worker is connected and taking jobs. */
  ready(): Promise<void>;
  /**
   * Stops taking jobs, waits (up to `graceMs`) for running ones, then stops
   * those at their next safe point (never mid-cutover), each going back in
   * the queue for another worker, and disconnects.
   */
  close(graceMs?: number): Promise<void>;
  /** Ends a close's grace now (a second SIGTERM or Ctrl-C): the running deploys are stopped at their next safe point. */
  hurry(): void;
  readonly context: DeployContext;
  /** This worker's metrics (main.ts serves them on `worker.metrics`). */
  readonly metrics: WorkerMetrics;
}

/**
 * The deploy worker: takes jobs from the queue and runs them, several apps
 * at once, one deploy per app. Redis connections wait and reconnect on
 * their own, so a Redis restart heals without restarting the worker.
 */
export function createDeployWorker(options: DeployWorkerOptions): DeployWorker {
  const { config, logger } = options;
  const prefix = config.queue.prefix;
  const redis = connectRedis(config.redis, 'worker');
  const bullConnection = connectRedis(config.redis, 'worker');
  // Named, so that an operator's CLIENT LIST tells it from the worker's other connections.
  const subscriber = connectRedis(config.redis, 'worker', { connectionName: `slipway-worker:${prefix}:events` });
  const store = new JobStore(redis, prefix, { retention: { keepPerApp: config.jobs.keep_per_app, keepDays: config.jobs.keep_days } });
  // The producer side too: the worker requeues what a cut-short enqueue left (see repair below); its BullMQ queue is the worker's.
  const producer = new DeployQueue({ redis, prefix, attempts: config.worker.attempts, backoffMs: config.worker.backoff_ms });
  const queue = producer.bull;
  const metrics = new WorkerMetrics({ queue, store, apps: Object.keys(config.apps) });
  const feedback = new DeployFeedback({ config, store, logger, metrics, retry: options.feedbackRetry });
  const context: DeployContext = {
    config, store, queue, redis, logger,
    docker: new Docker(dockerConnection(config.docker)),
    manager: config.engine.type === 'swarm' ? managerClient(config.engine) : undefined,
    etcd: createEtcdClient(config.etcd),
    secrets: configSecrets(config),
    running: new Map(),
    feedback,
    etcdWaitMs: options.etcdWaitMs,
  };

  const worker = new Worker(QUEUE_NAME, (job, token) => processDeploy(context, job, token), {
    connection: bullConnection,
    prefix,
    concurrency: options.concurrency ?? config.worker.concurrency,
    lockDuration: LOCK_DURATION_MS,
    stalledInterval: STALLED_INTERVAL_MS,
    maxStalledCount: MAX_STALLED_COUNT,
    autorun: true,
  });
  worker.on('error', (err) => logger.warn({ err: err.message }, 'queue connection trouble; retrying'));
  worker.on('stalled', (jobId) => logger.warn({ bullJob: jobId }, 'job stalled (its worker died); taking it up again'));
  // This worker could not renew its lock on a job (cut off from Redis past lockDuration): BullMQ hands the job
  // to another attempt, so this one stops at its next safe point (never mid-cutover) instead of running beside it.
  worker.on('lockRenewalFailed', (bullIds: string[]) => {
    for (const bullId of bullIds) {
      const id = bullId.replace(/^deploy-/, '');
      logger.warn({ job: id }, 'lost the queue lock of a running job; stopping it at the next safe point');
      context.running.get(id)?.abort(new TakenOver('lost its queue lock (its worker was cut off from Redis)'));
    }
  });
  // A job that stalled more often than maxStalledCount (its workers kept dying) is failed by BullMQ without
  // being run again: its record, still `active` from the attempt that died, must end too, or `--wait`, the
  // git hook and the job's page would wait for it for ever.
  worker.on('failed', (job) => {
    if (!job?.deferredFailure) return;
    const id = (job.data as { id: string }).id;
    void giveUp(id).catch((err: Error) => logger.warn({ job: id, err: err.message }, 'could not record a job given up after its workers died'));
  });
  const giveUp = (id: string) => settleGivenUp(context, id, new SlipwayError('worker_lost', `worker_lost: the workers running it died ${MAX_STALLED_COUNT + 1} times (killed, out of memory?), so it was given up; what it had started is cleaned up by the app's next deploy`));

  // `slipway cancel` of a running job, and any job's cancellation (for its commit status): messages on the events channel.
  void subscriber.subscribe(store.keys.events).catch(() => {});
  subscriber.on('message', (_channel, message) => {
    try {
      const event = JSON.parse(message) as { id?: string; cancel?: boolean; state?: string };
      if (event.cancel && event.id) context.running.get(event.id)?.abort();
      if (event.state === 'cancelled' && event.id) feedback.cancelled(event.id);
    } catch {
      // Not ours to understand.
    }
  });
  // A message sent while this connection was down is lost: once it is back, the running jobs' cancel keys say.
  subscriber.on('ready', () => {
    for (const [id, controller] of context.running) {
      void redis.exists(store.keys.cancel(id)).then((n) => n > 0 && controller.abort(), () => {});
    }
  });

  // Retention for what finishing jobs do not trim (apps that stopped deploying, a lowered keep_per_app), in batches;
  // the first time, jobs an older Slipway recorded are filed in the history's indexes first.
  const sweeping = new AbortController();
  const sweep = () => void store.indexHistory({ signal: sweeping.signal })
    .then(() => store.sweep({ apps: Object.keys(config.apps), signal: sweeping.signal }))
    .catch((err: Error) => logger.warn({ err: err.message }, 'job history sweep failed; next one in an hour'))
    // And what jobs that never finished here left on disk (build trees, pushed trees).
    .then(() => sweepLeftovers({ store, workdir: config.workdir, log: (line) => logger.info(line) }))
    .catch((err: Error) => logger.warn({ err: err.message }, 'sweeping leftover build and pushed trees failed; next time in an hour'));
  const sweepTimer = setInterval(sweep, HISTORY_SWEEP_INTERVAL_MS).unref();
  sweep();

  // A Redis that lost its data counts job ids from 1 again: raised past the releases etcd names live, at start and with
  // every repair sweep (Redis may be emptied under a running worker), so that no new job bears a live release's id for
  // long (one that does is told apart by its commit: see isOwnRelease).
  const raiseJobIds = async () => {
    const live = await Promise.all(Object.keys(config.apps).map((app) => currentRelease(context.etcd, app)));
    const newest = Math.max(0, ...live.map((release) => Number(release?.job)).filter(Number.isSafeInteger));
    if (await store.raiseJobIdsPast(newest)) logger.warn({ job: newest }, 'job ids counted from below a release etcd names live (Redis lost its data?): new jobs are numbered past it');
  };

  // A webhook answered 503 whose record and delivery claim were written but whose BullMQ job was not (Redis went away
  // between the two, too soon for the undo): the forge's retry is a "duplicate", so this job is the push's only one.
  const repair = () => void producer.repairOrphans()
    .then(({ requeued, failed, cancelled }) => {
      if (requeued.length > 0) logger.warn({ jobs: requeued }, 'queued webhook jobs whose queuing had been cut short');
      if (failed.length > 0) logger.warn({ jobs: failed }, 'ended jobs whose queuing had been cut short: could not be queued');
      if (cancelled.length > 0) logger.warn({ jobs: cancelled }, 'ended jobs cancelled while waiting whose records had not been ended');
    })
    .catch((err: Error) => logger.debug({ err: err.message }, 'looking for orphaned jobs failed; again in a minute'));
  // A job BullMQ gave up on whose record its 'failed' handler above never ended: nothing else would end it.
  const abandonedAfterMs = options.abandonedAfterMs ?? ABANDONED_AFTER_MS;
  const settleAbandoned = async () => {
    for (const record of await store.list({ state: 'active', limit: 500 })) {
      const job = await producer.bull.getJob(bullJobId(record.id));
      if (job?.failedReason !== STALLED_OUT || !job.finishedOn || Date.now() - job.finishedOn < abandonedAfterMs) continue;
      if ((await job.getState()) !== 'failed') continue;
      logger.warn({ job: record.id }, 'a job given up after its workers died was still recorded running; ending it');
      await giveUp(record.id);
    }
  };
  const repairAll = () => {
    repair();
    void raiseJobIds().catch((err: Error) => logger.debug({ err: err.message }, 'could not compare job ids with the live releases (etcd or Redis unreachable); again in a minute'));
    void settleAbandoned().catch((err: Error) => logger.debug({ err: err.message }, 'looking for jobs given up and still recorded running failed; again in a minute'));
    // Ends no one reported (a worker died between finishing a job and reporting it, or stopped before its final status
    // went out): their commit would show "Deploying" for ever.
    void feedback.reportUnreported(Object.keys(config.apps))
      .then((taken) => taken > 0 && logger.info({ jobs: taken }, 'reporting the ends of jobs no worker had reported'))
      .catch((err: Error) => logger.debug({ err: err.message }, 'looking for job ends no one reported failed; again in a minute'));
  };
  const repairTimer = setInterval(repairAll, ORPHAN_SWEEP_INTERVAL_MS).unref();
  repairAll();

  // The grace's wait, which hurry() ends at once; the wait for the safe points after it is not cut short.
  const hurried = new AbortController();
  const within = (ms: number, signal?: AbortSignal) => sleep(ms, 'timeout' as const, { ref: false, signal }).catch(() => 'timeout' as const);

  return {
    context,
    metrics,
    ready: () => worker.waitUntilReady().then(() => undefined),
    hurry: () => hurried.abort(),
    async close(graceMs = DEFAULT_SHUTDOWN_GRACE_MS) {
      sweeping.abort();
      clearInterval(sweepTimer);
      clearInterval(repairTimer);
      const graceful = worker.close().then(() => 'closed' as const);
      if ((await Promise.race([graceful, within(graceMs, hurried.signal)])) === 'timeout') {
        // BullMQ's close(true) would not do: a close in progress answers every later call, forced or not.
        logger.warn({ jobs: [...context.running.keys()] }, 'running deploys did not finish in time; stopping them at their next safe point, for another worker to run');
        for (const controller of context.running.values()) controller.abort(new TakenOver('was stopped by its worker\'s shutdown'));
        if ((await Promise.race([graceful, within(STOP_AT_SAFE_POINT_MS)])) === 'timeout') {
          // One past its switch may be draining (up to drain_s): the worker that takes it up finds it live and ends it.
          logger.warn({ jobs: [...context.running.keys()] }, 'running deploys did not stop; leaving them to BullMQ\'s stalled-job check');
        }
      }
      await feedback.close();
      await producer.close();
      context.etcd.close();
      for (const connection of [subscriber, bullConnection, redis]) connection.disconnect();
    },
  };
}
