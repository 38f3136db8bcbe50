import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { Redis } from 'ioredis';
import type { Logger } from '@slipway/core/logger';
import { errorResponse, SlipwayError } from '@slipway/core/slipway-error';
import type { SlipwayConfig } from '@slipway/config/types';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import { withRedis } from '@slipway/queue/redis';
import { appsApi } from './apps-api.js';
import { csrfGuard, requireAuth, SessionAuth, signInRoutes, SignInThrottle, type AuthLocals } from './auth.js';
import { deadlinePassed, hostCheck, REQUEST_TIMEOUT_MS, requestDeadline, securityHeaders, serverLimits } from './http-guards.js';
import { jobsApi } from './jobs-api.js';
import { JobEventHub, StreamSlots, streamsApi } from './live-streams.js';
import { pages } from './pages.js';

/** The package directory (this file is in `src/` or `dist/`). */
const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface DashboardOptions {
  /** `dashboard.token` is required; `apps`, `nginx`, `workdir` serve the overview and the actions. */
  config: SlipwayConfig;
  /** Producer side of the deploy queue (its store gives jobs and logs). */
  queue: DeployQueue;
  /** The producer's Redis connection; a duplicate of it subscribes to job events. */
  redis: Redis;
  etcd: Etcd3;
  docker: Docker;
  /** engine.type: swarm: the manager's client; app cards show each task's node. */
  manager?: Docker;
  logger: Logger;
  /** The compiled browser code. Default: `dist/web` of this package. */
  webDir?: string;
  /** Live streams served at most at once. Default {@link StreamSlots}' 200. */
  maxStreams?: number;
  /** Every other request must be received and answered within this. Default {@link REQUEST_TIMEOUT_MS} (30 s). */
  requestTimeoutMs?: number;
  /** A log stream whose socket does not drain for this long is dropped. Default STALLED_READER_MS (5 min). */
  stalledReaderMs?: number;
}

/** The dashboard app, plus what main.ts needs to shut it down cleanly. */
export type Dashboard = Express & {
  /** An HTTP server for it with {@link serverLimits} (headers within 10 s, the request within the timeout), listening on `port` and `host`. */
  serve(port: number, host: string): Server;
  /** Ends every live stream and the job-events subscription. */
  close(): void;
  /** Open live streams right now. */
  readonly openStreams: number;
  /** Live streams bound to a signed-in session right now (each ends when its session does). */
  readonly sessionStreams: number;
};

/**
 * The web dashboard and its JSON API as an express app, without listening
 * (main.ts does). Throws MissingTokenError without `dashboard.token`: there
 * is no unauthenticated mode. Routes are listed in the package README.
 */
export function createDashboard(options: DashboardOptions): Dashboard {
  const { config, queue, logger } = options;
  if (!config.dashboard.token) throw new MissingTokenError(config.file);
  const auth = new SessionAuth(config.dashboard.token);
  const throttle = new SignInThrottle();
  const slots = new StreamSlots(options.maxStreams);
  const hub = new JobEventHub(options.redis, queue.store.keys.events, logger);

  const requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // A TLS-terminating nginx on the same host makes requests `secure` (Secure cookie, https Origin check).
  app.set('trust proxy', 'loopback');
  app.use(requestDeadline(requestTimeoutMs));
  app.use(securityHeaders());
  app.use(requestLogger(logger));
  app.use(hostCheck(config.dashboard));

  app.get('/healthz', async (_req: Request, res: Response) => {
    await withRedis(queue.redis, () => queue.redis.ping(), 1000);
    res.json({ status: 'ok' });
  });
  // Scripts and styles hold no data: the sign-in page needs them before any session exists.
  app.use('/assets/web', express.static(options.webDir ?? join(PACKAGE_ROOT, 'dist', 'web'), { index: false, maxAge: 0 }));
  app.use('/assets', express.static(join(PACKAGE_ROOT, 'public'), { index: false, maxAge: 0 }));
  app.use(signInRoutes(auth, throttle, logger));

  app.use(requireAuth(auth, throttle, logger));
  const api = express.Router();
  api.use(express.json({ limit: '16kb' }), csrfGuard(auth));
  api.get('/session', (_req: Request, res: Response) => {
    const who = (res.locals as AuthLocals).auth;
    res.setHeader('Cache-Control', 'no-store');
    res.json(who.kind === 'session'
      ? { kind: 'session', csrf: who.session.csrf, expiresAt: new Date(who.session.expiresAt * 1000).toISOString() }
      : { kind: 'bearer' });
  });
  api.use(jobsApi({ queue, logger }));
  api.use(appsApi({ config, queue, etcd: options.etcd, docker: options.docker, manager: options.manager, logger }));
  api.use(streamsApi({ auth, queue, hub, slots, logger, stalledReaderMs: options.stalledReaderMs }));
  api.use((_req: Request, res: Response) => void res.status(404).json({ error: 'not_found', message: 'no such endpoint' }));
  app.use('/api', api);
  app.use(pages());
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const { status, body } = errorResponse(err);
    if (status === 500 && !deadlinePassed(res)) logger.error({ err, path: req.path }, 'unexpected error');
    if (status === 503) res.setHeader('Retry-After', '5');
    if (res.headersSent) return void res.end();
    res.setHeader('Cache-Control', 'no-store');
    res.status(status).json(body);
  });

  const dashboard = app as Dashboard;
  dashboard.serve = (port, host) => createServer(serverLimits(requestTimeoutMs), app).listen(port, host);
  dashboard.close = () => {
    slots.endAll();
    hub.close();
  };
  Object.defineProperty(dashboard, 'openStreams', { get: () => slots.count });
  Object.defineProperty(dashboard, 'sessionStreams', { get: () => auth.watching });
  return dashboard;
}

/**
 * The dashboard was asked to start without `dashboard.token`: it never
 * serves anything unauthenticated, so it refuses to start (exit 2).
 */
export class MissingTokenError extends SlipwayError {
  constructor(file: string | null) {
    super('dashboard_token_missing', `${file ?? 'config'}: dashboard.token: required to start the dashboard (for example token: \${SLIPWAY_DASHBOARD_TOKEN}); every page and API call needs it`, { fault: 'request' });
    this.name = 'MissingTokenError';
  }
}

/**
 * One log line per request when it ends: method, path, status, duration.
 * Reads at debug level, changes and failures at info/warn. Headers (cookies,
 * tokens) and bodies are never logged.
 */
function requestLogger(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    res.once('close', () => {
      const ms = Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100;
      const line = { method: req.method, path: req.path.slice(0, 200), status: res.statusCode, ms };
      if (res.statusCode >= 500) logger.warn(line, 'request failed');
      else if (req.method !== 'GET' && req.method !== 'HEAD') logger.info(line, 'request');
      else logger.debug(line, 'request');
    });
    next();
  };
}
