import { createHash } from 'node:crypto';
import type { Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '@slipway/core/logger';
import { errorResponse, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import type { SlipwayConfig } from '@slipway/config/types';
import type { ReceiverFeedback } from '@slipway/feedback/receiver-feedback';
import { checkContentEncoding, inspectWebhook, isProvider, readWebhookHeaders, webhookMediaType } from '@slipway/forges/inspect-webhook';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import type { Push } from '@slipway/queue/job-types';
import { connectRedis, type Redis, withRedis } from '@slipway/queue/redis';
import { BodyBudget, LARGE_BODIES_BUDGET_BYTES, readBody, SMALL_BODIES_BUDGET_BYTES } from './read-body.js';
import { requestContext, type RequestLocals } from './request-context.js';

export interface ReceiverOptions {
  /** `apps` (repo, branch, secret), `forges` (where `owner/name` apps live) and `receiver` (body_limit_mb, delivery_retention_h) are read. */
  config: Pick<SlipwayConfig, 'apps' | 'receiver' | 'forges'>;
  /** Producer side of the deploy queue; its Redis connection also answers /healthz. */
  queue: DeployQueue;
  logger: Logger;
  /**
   * Where webhooks are counted (ReceiverFeedback's). Default: not counted.
   * Never served on the webhook port: main.ts serves it on `receiver.metrics`.
   */
  metrics?: ReceiverFeedback['metrics'];
  /**
   * Bytes of bodies over SMALL_BODY_BYTES read at once, unverified; more are
   * answered 503 with Retry-After. Default LARGE_BODIES_BUDGET_BYTES, and
   * never less than the body limit.
   */
  largeBodiesBudgetBytes?: number;
  /** Bytes of smaller bodies held at once, unverified, as they arrive; more are answered 503 with Retry-After. Default SMALL_BODIES_BUDGET_BYTES. */
  smallBodiesBudgetBytes?: number;
  /**
   * Called once a push queued jobs, after the answer is decided and without
   * being awaited (main.ts posts `pending` commit statuses from here). It
   * must return at once; an exception it throws is logged, never answered.
   */
  onQueued?: (push: Push, jobs: readonly QueuedJob[]) => void;
  /** Webhooks waiting on Redis past which another is answered 503 at once. Default REDIS_BACKLOG_LIMIT. */
  redisBacklogLimit?: number;
}

/** How long /healthz waits for Redis's PONG. */
export const HEALTH_TIMEOUT_MS = 1000;
/** Seconds a forge is asked to wait before retrying after a 503. */
export const RETRY_AFTER_S = 5;
/**
 * How long queuing a push may wait on Redis before the answer is 503: a
 * Redis that hangs (the connection up, nothing answering) is unreachable
 * too, and the contract answers within a second.
 */
export const QUEUE_TIMEOUT_MS = 900;
/**
 * Webhooks whose jobs were sent to Redis and not yet answered. A Redis that
 * hangs answers none, and each webhook given up on after QUEUE_TIMEOUT_MS
 * still holds its job records in memory, waiting on the connection: past
 * this many, webhooks are refused before anything is sent, so the
 * receiver's memory stays bounded however long the hang lasts. Under load
 * a healthy Redis leaves a few dozen unanswered at most.
 */
export const REDIS_BACKLOG_LIMIT = 2000;
/** /healthz pings Redis has not answered, past which /healthz answers 503 without another. */
const HEALTH_PINGS_LIMIT = 50;

/**
 * The receiver's Redis connection: a producer (commands fail at once while
 * Redis is away, so webhooks get a quick 503), with auto-pipelining: the
 * commands of concurrent webhooks issued in one tick go out in one write,
 * which under load saves a system call per command.
 */
export function connectReceiverRedis(url: string): Redis {
  return connectRedis(url, 'producer', { enableAutoPipelining: true });
}

/**
 * The webhook receiver as an express app, without listening (main.ts
 * does). `POST /hooks/github|gitea|gitlab` answers per the receiver
 * contract (docs/contracts.md); `GET /healthz` says whether Redis answers.
 * `/metrics` is not here (404): it is served on a listener of its own.
 *
 * 202 bodies: one app → `{"job", "app"}`; several apps on the pushed
 * repository and branch → the first app's `{"job", "app"}` plus `"jobs"`
 * listing every `{"job", "app"}` in config order.
 */
export function createReceiver(options: ReceiverOptions): Express {
  const { queue, logger, metrics } = options;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestContext(logger, (req, res, summary) => {
    const hook = /^\/hooks(?:\/([^/]*))?(?:\/|$)/.exec(summary.path as string);
    if (hook && res.writableFinished) metrics?.webhook(hook[1] ?? '', res.statusCode, summary.outcome);
  }));

  app.post('/hooks/:provider', webhookRoute(options));
  app.all('/hooks/:provider', methodNotAllowed('POST'));

  let pings = 0;
  app.get('/healthz', async (_req: Request, res: Response) => {
    const redis = queue.redis;
    if (pings >= HEALTH_PINGS_LIMIT) throw new UnavailableError('redis', `Redis has not answered ${pings} health checks`);
    // Counted only once sent: withRedis sends nothing while Redis is away.
    await withRedis(redis, () => {
      pings++;
      return redis.ping().finally(() => pings--);
    }, HEALTH_TIMEOUT_MS);
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

/** Slow or stalled uploads must not hold a connection for ever. */
export const REQUEST_TIMEOUT_MS = 30_000;
export const HEADERS_TIMEOUT_MS = 10_000;

/**
 * Serves `app` on `port` and `host` as the receiver does: with its timeouts,
 * and with what node's HTTP parser refuses before express sees a request
 * answered in the contract's JSON (`{"error", "message"}`), not node's bare
 * status line.
 */
export function listenReceiver(app: Express, port: number, host: string): Server {
  const server = app.listen(port, host);
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.on('clientError', answerClientError);
  return server;
}

/** node's own answers to a request it could not parse, as the contract's JSON errors. */
const CLIENT_ERRORS: Record<string, [number, string, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'headers_too_large', 'the request\'s headers are over 16 KB'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'request_timeout', `the request was not received in time (its headers within ${HEADERS_TIMEOUT_MS / 1000} s, all of it within ${REQUEST_TIMEOUT_MS / 1000} s)`],
  HPE_INVALID_EOF_STATE: [400, 'Bad Request', 'request_aborted', 'the connection ended before the request did'],
};

/**
 * The server's `clientError`: what node would write (an answer only while no
 * answer to the connection's request has started), in JSON; then the
 * connection is closed, as node does.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  // node's own test before its answer: the response in flight on this connection, if any, must not have begun.
  const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
  if (err.code !== 'ECONNRESET' && socket.writable && !inFlight?.headersSent) {
    const [status, reason, error, message] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'Bad Request', 'bad_request', 'the request is not valid HTTP/1.1'];
    const body = JSON.stringify({ error, message });
    socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/**
 * What one receiver process may hold: the large bodies it reads at once
 * (never less than one body of `body_limit_mb`), the small ones, and the webhooks Redis has
 * not answered yet. The bounds are the receiver's, not each process's: with
 * `receiver.processes` N, each process takes an Nth.
 */
export function processBounds(receiver: SlipwayConfig['receiver'], options: Pick<ReceiverOptions, 'largeBodiesBudgetBytes' | 'smallBodiesBudgetBytes' | 'redisBacklogLimit'> = {}): { largeBodiesBytes: number; smallBodiesBytes: number; redisBacklog: number } {
  const processes = Math.max(1, receiver.processes);
  const limitBytes = Math.floor(receiver.body_limit_mb * 1024 * 1024);
  return {
    largeBodiesBytes: Math.max(options.largeBodiesBudgetBytes ?? Math.ceil(LARGE_BODIES_BUDGET_BYTES / processes), limitBytes),
    smallBodiesBytes: options.smallBodiesBudgetBytes ?? Math.ceil(SMALL_BODIES_BUDGET_BYTES / processes),
    redisBacklog: options.redisBacklogLimit ?? Math.ceil(REDIS_BACKLOG_LIMIT / processes),
  };
}

/**
 * `POST /hooks/:provider`: the forge (404), its headers (400) and media
 * type (415) before a byte of the body is read, the body (413, 503 when
 * too many large ones are being read), what it means (inspectWebhook:
 * 400, 401, 404, or 200 ignored), then the jobs it queues.
 */
function webhookRoute(options: ReceiverOptions): (req: Request, res: Response) => Promise<void> {
  const { config, queue, logger, onQueued } = options;
  const apps = Object.values(config.apps);
  const limitBytes = Math.floor(config.receiver.body_limit_mb * 1024 * 1024);
  const retentionSeconds = Math.max(1, Math.round(config.receiver.delivery_retention_h * 3600));
  const bounds = processBounds(config.receiver, options);
  const budget = new BodyBudget(bounds.largeBodiesBytes);
  const smallBudget = new BodyBudget(bounds.smallBodiesBytes);
  const backlogLimit = bounds.redisBacklog;

  return async (req, res) => {
    const locals = res.locals as RequestLocals;
    const provider = req.params.provider;
    if (!isProvider(provider)) throw new SlipwayError('not_found', 'unknown forge; use /hooks/github, /hooks/gitea or /hooks/gitlab', { status: 404 });
    const headers = readWebhookHeaders(provider, req.headersDistinct);
    locals.delivery = headers.delivery;
    Object.assign(locals.summary, { provider, dialect: headers.dialect, event: headers.event });
    const media = webhookMediaType(provider, req.headersDistinct['content-type']);
    checkContentEncoding(req.headersDistinct['content-encoding']);
    const body = await readBody(req, res, { limitBytes, budget, smallBudget });

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
    if (queue.unanswered >= backlogLimit) throw new UnavailableError('redis', `Redis has not answered ${queue.unanswered} webhooks; try again later`);
    const result = await queuePush(queue, { ...push, delivery: push.delivery! }, decision.apps.map((a) => a.name), retentionSeconds);
    answerQueued(req, res, push, result);
    if (result.kind !== 'queued' || !onQueued) return;
    try {
      onQueued(push, result.jobs);
    } catch (err) {
      locals.log.warn({ err: (err as Error).message }, 'could not hand the queued jobs over for commit statuses');
    }
  };
}

/** The answer once the push went to the queue: 202 naming its jobs, or 200 for a replay or a commit already live. */
function answerQueued(req: Request, res: Response, push: Push, result: QueuePushResult): void {
  const locals = res.locals as RequestLocals;
  switch (result.kind) {
    case 'duplicate':
      locals.summary.outcome = 'duplicate';
      send(req, res, 200, { duplicate: result.delivery, ...(result.jobs ? { jobs: result.jobs } : {}) });
      return;
    case 'stale':
      locals.summary.outcome = 'ignored:stale_push';
      send(req, res, 200, { ignored: 'stale_push', message: `commit ${push.sha} is already live for ${result.apps.join(', ')}, older than what is, or one an operator rolled back from; a forced push, or slipway deploy --ref, deploys it` });
      return;
    case 'queued': {
      const [first] = result.jobs;
      // Flat strings, not arrays of objects: cheaper for the logger's redaction.
      Object.assign(locals.summary, { outcome: 'queued', jobs: result.jobs.map((j) => `${j.app}:${j.job}`).join(','), sha: push.sha, branch: push.branch });
      send(req, res, 202, result.jobs.length === 1 ? first : { ...first, jobs: result.jobs });
    }
  }
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
  // Written directly rather than through res.json(): the same headers and bytes, without
  // express's charset, ETag and freshness machinery, which cost as much as the rest of the answer.
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/** One queued job: what `POST /hooks/*` answers per matched app. */
export interface QueuedJob {
  job: string;
  app: string;
}

type QueuePushResult =
  | { kind: 'queued'; jobs: QueuedJob[] }
  /** The delivery id, or this commit for these apps, was seen before; `jobs` is what was queued then, when known. */
  | { kind: 'duplicate'; delivery: string; jobs: QueuedJob[] | null }
  /** Every app already runs this commit or a newer one (and the push was not forced). */
  | { kind: 'stale'; apps: string[] };

/**
 * Queues one job per app for a verified push, once per delivery id: the
 * claim of the id, the job records and what they are are written in one
 * round trip (so two concurrent redeliveries queue once, and a redelivery
 * days later still names the jobs), then the jobs go to BullMQ. If queuing
 * fails the claim is dropped, so the forge's retry is not mistaken for a
 * duplicate. The delivery id is a header the signature does not cover, so
 * the same commit for the same app is queued once per retention window
 * too, and a commit already live, or older than what is, not at all
 * (unless the push was forced): a captured body sent again cannot roll an
 * app back.
 */
async function queuePush(queue: DeployQueue, push: Push & { delivery: string }, apps: readonly string[], retentionSeconds: number): Promise<QueuePushResult> {
  const requests = apps.map((app) => ({ app, sha: push.sha, ref: push.branch, image: null, trigger: 'webhook' as const, push }));
  const claim = { provider: push.provider, id: deliveryClaim(push.delivery, apps), ttlSeconds: retentionSeconds, guard: true };
  const { records, previous, skipped } = await queue.enqueueMany(requests, claim, { timeoutMs: QUEUE_TIMEOUT_MS });
  if (previous !== null) return { kind: 'duplicate', delivery: push.delivery, jobs: parseOutcome(previous) };
  if (records.length > 0) return { kind: 'queued', jobs: records.map((r) => ({ job: r.id, app: r.app })) };
  const replayed = skipped.filter((s) => s.reason === 'duplicate').map((s) => ({ job: s.job!, app: s.app }));
  if (replayed.length > 0) return { kind: 'duplicate', delivery: push.delivery, jobs: replayed };
  return { kind: 'stale', apps: skipped.map((s) => s.app) };
}

/**
 * What a delivery claims: its id for the apps its signature verified. A
 * forge gives every webhook of one event the same id (GitHub's
 * X-GitHub-Delivery, GitLab's event UUID), and apps of one repository
 * with secrets of their own each have a webhook: by the id alone, the
 * second webhook's apps were answered "duplicate" and never deployed.
 * A redelivery verifies the same apps, so it is still one.
 */
function deliveryClaim(delivery: string, apps: readonly string[]): string {
  const names = [...apps].sort().join(',');
  return names.length <= 128 ? `${delivery}:${names}` : `${delivery}:${createHash('sha256').update(names).digest('hex').slice(0, 32)}`;
}

function parseOutcome(text: string): QueuedJob[] | null {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? (value as QueuedJob[]) : null;
  } catch {
    return null;
  }
}
