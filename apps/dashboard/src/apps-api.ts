import { Router, type Request, type Response } from 'express';
import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import { scrubSecrets, secretEnvValues, type Logger } from '@slipway/core/logger';
import { firstLine, InvalidInputError } from '@slipway/core/slipway-error';
import { appConfig, configSecrets } from '@slipway/config/load-config';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { deployApp, rollbackApp } from '@slipway/queue/deploy-requests';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import type { JobStore } from '@slipway/queue/job-store';
import type { JobRecord, JobState } from '@slipway/queue/job-types';
import { withRedis } from '@slipway/queue/redis';
import { currentRelease, listReleases } from '@slipway/rollout/release-store';
import { appStatus, appStatuses, type AppStatus } from '@slipway/rollout/status';
import { extendDeadline } from './http-guards.js';
import { jobView } from './jobs-api.js';
import type { JobView } from './web/job-view.js';

/** How long one app's live status (etcd, Docker, health probes, nginx file) may take before the page says so. */
export const STATUS_TIMEOUT_MS = 8_000;
/** How long a deploy request may take: resolving its ref may fetch, or the first time clone, the app's repository. */
export const DEPLOY_REQUEST_TIMEOUT_MS = 600_000;

export interface AppsApiOptions {
  config: SlipwayConfig;
  queue: DeployQueue;
  etcd: Etcd3;
  docker: Docker;
  /** engine.type: swarm: the manager's client. */
  manager?: Docker;
  logger: Logger;
}

/**
 * `/api/app-names` (cheap, for filters), `/api/apps…` (the overview, one app, its kept releases) and the deploy
 * and rollback actions: `deployApp` and `rollbackApp`, exactly what
 * `slipway deploy` and `slipway rollback` call.
 */
export function appsApi(options: AppsApiOptions): Router {
  const { config, queue, etcd, docker, manager, logger } = options;
  const router = Router();
  const live = { nginx: config.nginx, dns: config.dns, docker, manager, etcd };
  // A dependency's error shown on the page may quote what it was given (a credential, an app's env).
  const secrets = [...configSecrets(config), ...Object.values(config.apps).flatMap((app) => secretEnvValues(app.env))];
  const scrub = (text: string) => scrubSecrets(text, secrets);

  router.get('/app-names', (_req: Request, res: Response) => {
    res.json({ apps: Object.values(config.apps).map((a) => ({ name: a.name, branch: a.branch })) });
  });

  router.get('/apps', async (_req: Request, res: Response) => {
    const apps = Object.values(config.apps);
    res.json({
      apps: await withRedis(queue.redis, () => {
        const statuses = appStatuses({ ...live, apps });
        const jobs = recentJobs(queue.store, apps);
        return Promise.all(apps.map((app, n) => appOverview(app, statuses[n]!, jobs.then((all) => all[n]!), scrub)));
      }, 15_000),
    });
  });

  router.get('/apps/:app', async (req: Request<{ app: string }>, res: Response) => {
    const app = appConfig(config, req.params.app);
    res.json({ app: await withRedis(queue.redis, () => appOverview(app, appStatus({ ...live, app }), recentJobs(queue.store, [app]).then(([jobs]) => jobs!), scrub), 15_000) });
  });

  router.get('/apps/:app/releases', async (req: Request<{ app: string }>, res: Response) => {
    const app = appConfig(config, req.params.app);
    const [current, releases] = await Promise.all([currentRelease(etcd, app.name), listReleases(etcd, app.name)]);
    res.json({ current, releases });
  });

  router.post('/deploy', async (req: Request, res: Response) => {
    extendDeadline(req, res, DEPLOY_REQUEST_TIMEOUT_MS);
    const body = bodyOf(req);
    const app = appConfig(config, text(body.app, 'app'));
    const ref = body.ref === undefined || body.ref === null || body.ref === '' ? undefined : text(body.ref, 'ref');
    // A request that ended before its deploy was queued (the deadline answered "try again", or the operator left) queues
    // nothing: resolving a ref can take minutes (a first clone), and a deploy queued after its 503 would run twice once retried.
    const ended = new AbortController();
    res.once('close', () => ended.abort());
    const job = await deployApp({ config, queue, app, ref, trigger: 'cli', signal: ended.signal }).catch((err: unknown) => {
      if (ended.signal.aborted) return null;
      throw err;
    });
    if (!job) return void logger.info({ app: app.name }, 'deploy request ended before its ref was resolved; nothing queued');
    logger.info({ job: job.id, app: app.name, sha: job.sha }, 'deploy queued from the dashboard');
    res.status(201).json({ job: jobView(job) });
  });

  router.post('/rollback', async (req: Request, res: Response) => {
    const body = bodyOf(req);
    const app = appConfig(config, text(body.app, 'app'));
    const to = body.to === undefined || body.to === null || body.to === '' ? undefined : text(body.to, 'to');
    const { job, target } = await rollbackApp({ queue, etcd, app, to });
    logger.info({ job: job.id, app: app.name, to: target.sha ?? target.image }, 'rollback queued from the dashboard');
    res.status(201).json({ job: jobView(job), target });
  });

  return router;
}

function bodyOf(req: Request): Record<string, unknown> {
  const body = req.body as unknown;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidInputError('send a JSON object (Content-Type: application/json)');
  return body as Record<string, unknown>;
}

function text(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 255) throw new InvalidInputError(`${name}: a non-empty string`);
  return value.trim();
}

/** States a job ends in that decided something (superseded ones did not). */
const OUTCOMES: readonly JobState[] = ['completed', 'failed', 'cancelled'];

/** One app on the overview: its configuration, what is live (as `slipway status` sees it), and its recent jobs. */
export interface AppOverview {
  name: string;
  branch: string;
  replicas: number;
  routing: AppConfig['routing'];
  listen: string;
  serverName: string[];
  /** `slipway status --json` for this app, or null when it could not be read (see statusError). */
  status: AppStatus | null;
  statusError: string | null;
  /** The newest job, whatever its state. */
  lastJob: JobView | null;
  /** The newest job running now (active), which a newer one waiting behind it would otherwise hide. */
  running: JobView | null;
  /** The newest job that ran to an outcome (completed, failed or cancelled). */
  lastOutcome: JobView | null;
}

/** Per app, its newest job, its newest active one and its newest of each outcome (in OUTCOMES' order): one JobStore.newest for all of them. */
async function recentJobs(store: JobStore, apps: readonly AppConfig[]): Promise<Array<Array<JobRecord | undefined>>> {
  const states: ReadonlyArray<JobState | undefined> = [undefined, 'active', ...OUTCOMES];
  const found = await store.newest(apps.flatMap((app) => states.map((state) => ({ app: app.name, ...(state && { state }) }))));
  return apps.map((_app, n) => found.slice(n * states.length, (n + 1) * states.length));
}

/** Gathers one app's overview from its status (appStatus) and recentJobs; a dependency that is down becomes `statusError`, not a failed page. */
async function appOverview(app: AppConfig, liveStatus: Promise<AppStatus>, recent: Promise<Array<JobRecord | undefined>>, scrub: (text: string) => string): Promise<AppOverview> {
  const [status, [last, running, ...outcomes]] = await Promise.all([
    withTimeout(liveStatus, STATUS_TIMEOUT_MS).then((value) => ({ value, error: null }), (err: unknown) => ({ value: null, error: scrub(firstLine(err)) })),
    recent,
  ]);
  const outcome = outcomes.filter((j) => j !== undefined).sort((a, b) => Number(b.id) - Number(a.id))[0];
  return {
    name: app.name, branch: app.branch, replicas: app.replicas, routing: app.routing, listen: app.listen, serverName: app.server_name,
    status: status.value, statusError: status.error,
    lastJob: last ? jobView(last) : null,
    running: running ? jobView(running) : null,
    lastOutcome: outcome ? jobView(outcome) : null,
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s (etcd, Docker or a health check is slow)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
