import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '@slipway/core/logger';
import { SlipwayError } from '@slipway/core/slipway-error';
import type { SlipwayConfig } from '@slipway/config/types';
import { inspectWebhook, isProvider, readWebhookHeaders, webhookMediaType } from '@slipway/forges/inspect-webhook';
import { ReceiverMetrics } from '@slipway/feedback/receiver-metrics';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import type { Push } from '@slipway/queue/job-types';
import { withRedis } from '@slipway/queue/redis-errors';
import { errorResponse } from '@slipway/core/slipway-error';
import { queuePush, type QueuedJob } from './queue-push.js';
import { BodyBudget, LARGE_BODIES_BUDGET_BYTES, readBody } from './read-body.js';
import { requestContext, type RequestLocals } from './request-context.js';

export interface ReceiverOptions {
  /** `apps` (repo, branch, secret), `forges` (where `owner/name` apps live) and `receiver` (body_limit_mb, delivery_retention_h) are read. */
  config: Pick<SlipwayConfig, 'apps' | 'receiver' | 'forges'>;
  /** Producer side of the deploy queue; its Redis connection also answers /healthz. */
  queue: DeployQueue;
  logger: Logger;
  /**
   * Where webhooks are counted. Default: a registry of this receiver's own.
   * Never served on the webhook port: main.ts serves it on `receiver.metrics`.
   */
  metrics?: ReceiverMetrics;
  /**
   * Bytes of bodies over SMALL_BODY_BYTES read at once, unverified; more are
   * answered 503 with Retry-After. Default LARGE_BODIES_BUDGET_BYTES, and
   * never less than the body limit.
   */
  largeBodiesBudgetBytes?: number;
  /**
   * Called once a push queued jobs, after the answer is decided and without
   * being awaited (main.ts posts `pending` commit statuses from here). It
   * must return at once; an exception it throws is logged, never answered.
   */
  onQueued?: (push: Push, jobs: readonly QueuedJob[]) => void;
}

/** How long /healthz waits for Redis's PONG. */
export const HEALTH_TIMEOUT_MS = 1000;
/** Seconds a forge is asked to wait before retrying after a 503. */
export const RETRY_AFTER_S = 5;

/**
 * The webhook receiver as an express app, without listening (main.ts
 * does). `POST /hooks/github|gitea|gitlab` answers per the receiver
 * contract in DESIGN.md; `GET /healthz` says whether Redis answers.
 * `/metrics` is not here (404): it is served on a listener of its own.
 *
 * 202 bodies: one app → `{"job", "app"}`; several apps on the pushed
 * repository and branch → the first app's `{"job", "app"}` plus `"jobs"`
 * listing every `{"job", "app"}` in config order.
 */
export function createReceiver(options: ReceiverOptions): Express {
  const { config, queue, logger, onQueued } = options;
  const metrics = options.metrics ?? new ReceiverMetrics();
  const apps = Object.values(config.apps);
  const limitBytes = Math.floor(config.receiver.body_limit_mb * 1024 * 1024);
  const retentionSeconds = Math.max(1, Math.round(config.receiver.delivery_retention_h * 3600));
  const budget = new BodyBudget(Math.max(options.largeBodiesBudgetBytes ?? LARGE_BODIES_BUDGET_BYTES, limitBytes));

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestContext(logger, (req, res, summary) => {
    const hook = /^\/hooks(?:\/([^/]*))?(?:\/|$)/.exec(req.path);
    if (hook && res.writableFinished) metrics.webhook(hook[1] ?? '', res.statusCode, summary.outcome);
  }));

  app.post('/hooks/:provider', async (req: Request, res: Response) => {
    const locals = res.locals as RequestLocals;
    const provider = req.params.provider;
    if (!isProvider(provider)) throw new SlipwayError('not_found', 'unknown forge; use /hooks/github, /hooks/gitea or /hooks/gitlab', { status: 404 });
    const headers = readWebhookHeaders(provider, req.headersDistinct);
    locals.delivery = headers.delivery;
    Object.assign(locals.summary, { provider, dialect: headers.dialect, event: headers.event });
    const media = webhookMediaType(provider, req.headersDistinct['content-type']);
    const body = await readBody(req, res, { limitBytes, budget });

    const decision = await inspectWebhook({ headers, media, body, apps, forges: config.forges });
    if (logger.isLevelEnabled('debug')) {
      locals.log.debug({ bytes: body.length, decision: decision.kind, apps: decision.kind === 'push' ? decision.apps.map((a) => a.name).join(',') : '' }, 'webhook inspected');
    }
    if (decision.kind === 'ignored') {
      locals.summary.outcome = `ignored:${decision.reason}`;
      send(req, res, 200, { ignored: decision.reason, message: decision.message });
      return;
    }
    const { push } = decision;
    const result = await queuePush(queue, { ...push, delivery: push.delivery! }, decision.apps.map((a) => a.name), retentionSeconds);
    if (result.kind === 'duplicate') {
      locals.summary.outcome = 'duplicate';
      send(req, res, 200, { duplicate: result.delivery, ...(result.jobs ? { jobs: result.jobs } : {}) });
      return;
    }
    if (result.kind === 'stale') {
      locals.summary.outcome = 'ignored:stale_push';
      send(req, res, 200, { ignored: 'stale_push', message: `commit ${push.sha} is already live for ${result.apps.join(', ')}, or older than what is; a forced push, or slipway deploy --ref, deploys it` });
      return;
    }
    const [first] = result.jobs;
    // Flat strings, not arrays of objects: cheaper for the logger's redaction.
    Object.assign(locals.summary, { outcome: 'queued', jobs: result.jobs.map((j) => `${j.app}:${j.job}`).join(','), sha: push.sha, branch: push.branch });
    send(req, res, 202, result.jobs.length === 1 ? first : { ...first, jobs: result.jobs });
    if (onQueued) {
      try {
        onQueued(push, result.jobs);
      } catch (err) {
        locals.log.warn({ err: (err as Error).message }, 'could not hand the queued jobs over for commit statuses');
      }
    }
  });
  app.all('/hooks/:provider', methodNotAllowed('POST'));

  app.get('/healthz', async (_req: Request, res: Response) => {
    const redis = queue.redis;
    await withRedis(redis, () => redis.ping(), HEALTH_TIMEOUT_MS);
    res.status(200).json({ status: 'ok', redis: 'up' });
  });
  app.all('/healthz', methodNotAllowed('GET, HEAD'));

  app.use((req: Request, res: Response) => {
    send(req, res, 404, { error: 'not_found', message: 'no such endpoint' });
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const { status, body } = errorResponse(err);
    const locals = res.locals as Partial<RequestLocals>;
    if (locals.summary) locals.summary.outcome = body.error;
    if (status === 500) (locals.log ?? logger).error({ err }, 'unexpected error');
    if (status === 503) res.setHeader('Retry-After', String(RETRY_AFTER_S));
    if (res.headersSent) return void res.end();
    send(req, res, status, body);
  });
  return app;
}

function methodNotAllowed(allow: string) {
  return (req: Request, res: Response) => {
    res.setHeader('Allow', allow);
    send(req, res, 405, { error: 'method_not_allowed', message: `use ${allow.split(', ')[0]}` });
  };
}

/**
 * Sends JSON. When the body was not read (refused early: 413, 415, bad
 * headers), the connection is closed after the answer instead of reading
 * an upload nobody wants.
 */
function send(req: Request, res: Response, status: number, body: unknown): void {
  if (!req.complete) {
    res.setHeader('Connection', 'close');
    res.once('finish', () => {
      req.resume();
      setTimeout(() => req.socket.destroy(), 2000).unref();
    });
  }
  res.status(status).json(body);
}
