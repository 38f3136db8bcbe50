import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from '@slipway/core/logger';
import { isProvider } from '@slipway/forges/forge-address';
import type { JobStore } from '@slipway/queue/job-store';
import type { JobRecord, Step } from '@slipway/queue/job-types';
import type { DeliveryOutcome } from './delivery.js';

/*
 * Prometheus metrics: the receiver's and the worker's, each in a registry
 * of its own (never prom-client's global one), and the listener that
 * serves one of them on `GET /metrics`.
 */

/**
 * The receiver's metrics, in a registry of its own (never prom-client's
 * global one): webhooks by provider and outcome, commit statuses it
 * posted, and the process's default metrics.
 */
export class ReceiverMetrics {
  readonly registry = new Registry();
  readonly webhooks: Counter<'provider' | 'outcome'>;
  private readonly deliveries: Counter<'target' | 'outcome'>;

  /** `defaultMetrics`: process and Node.js metrics (CPU, memory, event loop lag, GC). Default true. */
  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.webhooks = new Counter({
      name: 'slipway_webhooks_received_total',
      help: 'Webhooks answered, by provider and outcome (queued, duplicate, ignored, rejected_4xx, error_5xx).',
      labelNames: ['provider', 'outcome'] as const,
      registers: [this.registry],
    });
    this.deliveries = deliveryCounter(this.registry);
  }

  /** One answered webhook: its provider (from the path), status and the receiver's summary outcome. */
  webhook(provider: string, status: number, summary: unknown): void {
    // A path naming no forge is counted as `unknown`: a label must not be attacker-chosen.
    this.webhooks.inc({ provider: isProvider(provider) ? provider : 'unknown', outcome: webhookOutcome(status, summary) });
  }

  /** For BackgroundDelivery's `onSettled`. */
  readonly delivery = (target: string, outcome: DeliveryOutcome): void => {
    this.deliveries.inc({ target, outcome });
  };
}

/** How a webhook was answered, as the `outcome` label of `slipway_webhooks_received_total`. */
export type WebhookOutcome = 'queued' | 'duplicate' | 'ignored' | 'rejected_4xx' | 'error_5xx';

/**
 * From the answer's status and the receiver's summary outcome (`queued`,
 * `duplicate`, `ignored:<reason>`, or an error code): 202 is queued, a 200
 * is a duplicate or ignored, 4xx were refused (signature, body, unknown
 * repository…), 5xx could not be handled (Redis away).
 */
export function webhookOutcome(status: number, summary: unknown): WebhookOutcome {
  if (status >= 500) return 'error_5xx';
  if (status >= 400) return 'rejected_4xx';
  if (status === 202) return 'queued';
  return summary === 'duplicate' ? 'duplicate' : 'ignored';
}

/** Seconds: from a cached one-step build to a long first build. */
export const DURATION_BUCKETS = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600];
/** A scrape never waits longer than this for Redis; queue depth is then left out and the oldest wait is NaN. */
export const QUEUE_SCRAPE_TIMEOUT_MS = 1000;
/** Steps of the rollout proper: a failure there left the previous release serving. */
const ROLLOUT_STEPS: ReadonlySet<Step> = new Set(['start', 'health', 'switch', 'drain']);

export interface WorkerMetricsOptions {
  /** The deploy queue, for `slipway_queue_jobs` (read at scrape time). */
  queue?: { getJobCounts(...types: string[]): Promise<Record<string, number>> };
  /** Job records, for `slipway_queue_oldest_waiting_seconds` (read at scrape time). */
  store?: JobStore;
  /** The apps whose waiting jobs are looked at. */
  apps?: readonly string[];
  /** Process and Node.js metrics. Default true. */
  defaultMetrics?: boolean;
}

/**
 * The worker's metrics, in a registry of its own: jobs by app and final
 * state, deploy and step durations, failed rollouts and rollbacks, build
 * cache use, the last rollout's drain, queue depth and the oldest waiting
 * job (both read when scraped), feedback deliveries, and the process's
 * default metrics.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly jobsFinished: Counter<'app' | 'state'>;
  readonly deployDuration: Histogram<'app' | 'state'>;
  readonly stepDuration: Histogram<'app' | 'step'>;
  readonly rolloutsFailed: Counter<'app' | 'code'>;
  readonly rollbacks: Counter<'app' | 'state'>;
  readonly buildSteps: Counter<'app'>;
  readonly buildCachedSteps: Counter<'app'>;
  readonly drainOpenConnections: Gauge<'app'>;
  private readonly deliveries: Counter<'target' | 'outcome'>;

  constructor(options: WorkerMetricsOptions = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.jobsFinished = new Counter({ name: 'slipway_jobs_finished_total', help: 'Jobs that reached a final state (completed, failed, superseded, cancelled), by app.', labelNames: ['app', 'state'] as const, registers });
    this.deployDuration = new Histogram({ name: 'slipway_deploy_duration_seconds', help: 'From a job\'s start to its end, for completed and failed deploys.', labelNames: ['app', 'state'] as const, buckets: DURATION_BUCKETS, registers });
    this.stepDuration = new Histogram({ name: 'slipway_deploy_step_duration_seconds', help: 'How long each step of a deploy took (queued, checkout, build, start, health, switch, drain), from the job\'s step timeline.', labelNames: ['app', 'step'] as const, buckets: DURATION_BUCKETS, registers });
    this.rolloutsFailed = new Counter({ name: 'slipway_rollouts_failed_total', help: 'Deploys that failed in the rollout (start, health, switch, drain) and left the previous release serving, by error code.', labelNames: ['app', 'code'] as const, registers });
    this.rollbacks = new Counter({ name: 'slipway_rollbacks_total', help: 'Rollback jobs (`slipway rollback`) that ended, by final state.', labelNames: ['app', 'state'] as const, registers });
    this.buildSteps = new Counter({ name: 'slipway_build_steps_total', help: 'Dockerfile steps run by image builds.', labelNames: ['app'] as const, registers });
    this.buildCachedSteps = new Counter({ name: 'slipway_build_cache_hits_total', help: 'Dockerfile steps Docker took from its layer cache.', labelNames: ['app'] as const, registers });
    this.drainOpenConnections = new Gauge({ name: 'slipway_rollout_drain_open_connections', help: 'Connections still open to the old containers when the last rollout stopped them (0: drained); above 0, requests may have been cut.', labelNames: ['app'] as const, registers });
    this.deliveries = deliveryCounter(this.registry);

    const { queue, store, apps } = options;
    if (queue) {
      new Gauge({
        name: 'slipway_queue_jobs', help: 'Deploy jobs in the queue by state (waiting, active, delayed), read at scrape time.', labelNames: ['state'] as const, registers,
        async collect() {
          this.reset();
          const counts = await withTimeout(queue.getJobCounts('wait', 'prioritized', 'active', 'delayed'));
          if (!counts) return;
          this.set({ state: 'waiting' }, (counts.wait ?? 0) + (counts.prioritized ?? 0));
          this.set({ state: 'active' }, counts.active ?? 0);
          this.set({ state: 'delayed' }, counts.delayed ?? 0);
        },
      });
    }
    if (store && apps) {
      new Gauge({
        name: 'slipway_queue_oldest_waiting_seconds', help: 'Age of the oldest job still waiting (queued, behind a busy app, or before a retry); 0 when none waits, NaN when Redis could not be read. Read at scrape time.', registers,
        async collect() {
          const oldest = await withTimeout(oldestWaiting(store, apps));
          // Unknown (Redis away or slow): NaN, which no alert threshold matches, rather than a reassuring 0.
          if (oldest === undefined) return this.set(Number.NaN);
          this.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
        },
      });
    }
  }

  /** A job reached a final state. `code`: its error's code, for a failed job. */
  jobFinished(record: Pick<JobRecord, 'app' | 'state' | 'step' | 'steps' | 'trigger' | 'startedAt' | 'createdAt' | 'finishedAt'>, code?: string): void {
    const { app, state } = record;
    this.jobsFinished.inc({ app, state });
    if (record.trigger === 'rollback') this.rollbacks.inc({ app, state });
    if (state !== 'completed' && state !== 'failed') return;
    if (record.finishedAt) {
      const seconds = (Date.parse(record.finishedAt) - Date.parse(record.startedAt ?? record.createdAt)) / 1000;
      if (Number.isFinite(seconds) && seconds >= 0) this.deployDuration.observe({ app, state }, seconds);
    }
    for (const { step, seconds } of stepDurations(record)) this.stepDuration.observe({ app, step }, seconds);
    if (state === 'failed' && ROLLOUT_STEPS.has(record.step)) this.rolloutsFailed.inc({ app, code: code ?? 'unknown' });
  }

  /** An image was built: how many of its steps came from the cache. */
  built(app: string, build: { cachedSteps: number; totalSteps: number }): void {
    this.buildSteps.inc({ app }, build.totalSteps);
    this.buildCachedSteps.inc({ app }, build.cachedSteps);
  }

  /** A rollout went live: what its drain left open. */
  rolledOut(app: string, result: { drain: { open: number } | null }): void {
    this.drainOpenConnections.set({ app }, result.drain?.open ?? 0);
  }

  /** For BackgroundDelivery's `onSettled`. */
  readonly delivery = (target: string, outcome: DeliveryOutcome): void => {
    this.deliveries.inc({ target, outcome });
  };
}

/** When the oldest waiting job of any of `apps` was created (ms), null when none waits. */
async function oldestWaiting(store: JobStore, apps: readonly string[]): Promise<number | null> {
  if (apps.length === 0) return null;
  const firsts = await Promise.all(apps.map((app) => store.redis.zrange(store.keys.waiting(app), 0, 0)));
  const ids = firsts.map((ids) => ids[0]).filter((id): id is string => id !== undefined);
  if (ids.length === 0) return null;
  const created = await Promise.all(ids.map((id) => store.redis.hget(store.keys.job(id), 'createdAt')));
  const times = created.filter((c): c is string => c !== null).map((c) => Date.parse(JSON.parse(c) as string)).filter(Number.isFinite);
  return times.length ? Math.min(...times) : null;
}

/** The value, or undefined when it took longer than QUEUE_SCRAPE_TIMEOUT_MS or failed. */
async function withTimeout<T>(promise: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), QUEUE_SCRAPE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([promise.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How long each step of a job took, from its step timeline: a step lasts
 * until the next one began. The step a job ended in (its failure, or
 * `done`) has no end in the timeline and is left out, so the histograms
 * hold what a step takes when it gets through. `queued` is the wait for a
 * worker (and for the app, when another deploy of it was running).
 */
export function stepDurations(record: Pick<JobRecord, 'steps'>): Array<{ step: Step; seconds: number }> {
  const out: Array<{ step: Step; seconds: number }> = [];
  for (let i = 0; i + 1 < record.steps.length; i++) {
    const { step, at } = record.steps[i]!;
    const seconds = (Date.parse(record.steps[i + 1]!.at) - Date.parse(at)) / 1000;
    if (step !== 'done' && Number.isFinite(seconds) && seconds >= 0) out.push({ step, seconds });
  }
  return out;
}

/** `slipway_feedback_deliveries_total{target, outcome}`: commit statuses and notifications, delivered, failed (after every retry) or dropped (made moot by a newer status, or shutting down). */
function deliveryCounter(registry: Registry): Counter<'target' | 'outcome'> {
  return new Counter({
    name: 'slipway_feedback_deliveries_total',
    help: 'Commit statuses and notifications by target (github, gitea, gitlab, slack, webhook) and outcome (delivered, failed after all retries, dropped as moot).',
    labelNames: ['target', 'outcome'] as const,
    registers: [registry],
  });
}

/**
 * Serves `GET /metrics` from `registry` on `address` (`host:port`, port 0
 * for any). Resolves with the server once it listens, or null when the
 * address is taken (a second worker or receiver on the machine): that
 * process serves no metrics, and says so once. Other listen errors reject.
 * `what` names the process in that message (default `worker`).
 */
export async function serveMetrics(registry: Registry, address: string, logger: Logger, what = 'worker'): Promise<Server | null> {
  const split = address.lastIndexOf(':');
  const host = address.slice(0, split).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(split + 1));
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('use GET\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: Error) => {
        logger.warn({ err: err.message }, 'could not collect metrics');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  server.requestTimeout = 10_000;
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EADDRINUSE') return reject(err);
      logger.warn({ address }, `metrics address ${address} is taken (another ${what}?); this one serves no metrics`);
      resolve(null);
    });
    server.listen(port, host, () => {
      const bound = server.address() as AddressInfo;
      const shown = bound.address.includes(':') ? `[${bound.address}]` : bound.address;
      logger.info({ host: bound.address, port: bound.port }, `metrics on http://${shown}:${bound.port}/metrics`);
      resolve(server);
    });
  });
}
