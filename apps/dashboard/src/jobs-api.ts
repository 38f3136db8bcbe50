import { once } from 'node:events';
import { Router, type Request, type Response } from 'express';
import type { Logger } from '@slipway/core/logger';
import { InvalidInputError } from '@slipway/core/slipway-error';
import { APP_NAME } from '@slipway/core/validate';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import type { ListOptions } from '@slipway/queue/job-store';
import { JOB_STATES, TRIGGERS, type JobRecord, type JobState, type Trigger } from '@slipway/queue/job-types';
import { withRedis } from '@slipway/queue/redis';
import { extendDeadline } from './http-guards.js';
import type { JobView } from './web/job-view.js';

/** Jobs listed when no `limit` is given, and the most one request may ask for. */
export const DEFAULT_JOB_LIMIT = 50;
export const MAX_JOB_LIMIT = 500;
/** Lines one `GET /api/jobs/:id/log` returns when no `limit` is given, and at most. */
export const DEFAULT_LOG_PAGE = 5_000;
export const MAX_LOG_PAGE = 50_000;
/** Bytes of lines one `GET /api/jobs/:id/log` returns at most (at least one line): fewer lines than `limit` when they are long. */
export const MAX_LOG_PAGE_BYTES = 4 * 1024 * 1024;
/** Lines, and bytes, per Redis read while a log is downloaded. */
const DOWNLOAD_CHUNK = 5_000;
const DOWNLOAD_CHUNK_BYTES = 1024 * 1024;

export interface JobsApiOptions {
  queue: DeployQueue;
  logger: Logger;
}

/**
 * `/api/jobs…`: the list (`?app=&state=&trigger=&q=&before=&limit=`, a
 * page by cursor: `next` is the next page's `before`), one job, its log as JSON
 * pages and as a download (its live stream is in live-streams.ts), and the
 * re-run and cancel actions (`queue.retry` / `queue.cancel`, what `slipway
 * retry` and `slipway cancel` do).
 */
export function jobsApi(options: JobsApiOptions): Router {
  const { queue, logger } = options;
  const store = queue.store;
  const router = Router();

  router.get('/jobs', async (req: Request, res: Response) => {
    const query = jobQuery(req.query);
    const page = await withRedis(queue.redis, () => store.page(query));
    res.json({ jobs: page.jobs.map(jobView), next: page.next });
  });

  router.get('/jobs/:id', async (req: Request<{ id: string }>, res: Response) => {
    const [record, lines] = await withRedis(queue.redis, () => Promise.all([store.mustGet(req.params.id), store.logLength(req.params.id)]));
    res.json({ job: jobView(record), logLines: lines });
  });

  router.get('/jobs/:id/log', async (req: Request<{ id: string }>, res: Response) => {
    const from = Math.max(1, lineNumber(req.query.from, 'from', 1));
    const limit = Math.min(MAX_LOG_PAGE, Math.max(1, lineNumber(req.query.limit, 'limit', DEFAULT_LOG_PAGE)));
    const { id } = req.params;
    const [record, total, lines] = await withRedis(queue.redis, async () => {
      const record = await store.mustGet(id);
      return [record, await store.logLength(id), await store.readLogBounded(id, from, from + limit - 1, MAX_LOG_PAGE_BYTES)] as const;
    });
    res.json({ id, from, lines, total, state: record.state });
  });

  router.get('/jobs/:id/log.txt', async (req: Request<{ id: string }>, res: Response) => {
    const { id } = req.params;
    const [record, total] = await withRedis(queue.redis, () => Promise.all([store.mustGet(id), store.logLength(id)]));
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.setHeader('Content-Disposition', `attachment; filename="${record.app}-job-${id}.log"`);
    res.setHeader('Cache-Control', 'no-store');
    // A big log over a slow link may take minutes: the deadline counts from the last chunk that went out.
    for (let from = 1; from <= total && !res.destroyed;) {
      extendDeadline(req, res);
      const lines = await store.readLogBounded(id, from, Math.min(total, from + DOWNLOAD_CHUNK - 1), DOWNLOAD_CHUNK_BYTES).catch(() => null);
      // Redis gone, or the job trimmed, halfway: the download must not end as if complete. Cut, the client sees it failed.
      if (lines === null || lines.length === 0) return void res.destroy();
      from += lines.length;
      if (!res.write(`${lines.join('\n')}\n`)) await drainedOrClosed(res);
    }
    res.end();
  });

  router.post('/jobs/:id/retry', async (req: Request<{ id: string }>, res: Response) => {
    const job = await queue.retry(req.params.id);
    logger.info({ job: job.id, retryOf: req.params.id }, 'job re-run from the dashboard');
    res.status(201).json({ job: jobView(job) });
  });

  router.post('/jobs/:id/cancel', async (req: Request<{ id: string }>, res: Response) => {
    const job = await queue.cancel(req.params.id);
    logger.info({ job: job.id, state: job.state }, 'cancel requested from the dashboard');
    res.status(202).json({ job: jobView(job), cancelRequested: job.state !== 'cancelled' });
  });

  return router;
}

/** Resolves when `res` can take more or is gone, leaving no listener behind (a long download waits once per chunk). */
async function drainedOrClosed(res: Response): Promise<void> {
  // Gone already, its 'close' was sent: waiting for one would wait for ever.
  if (res.destroyed) return;
  const done = new AbortController();
  try {
    await Promise.race([once(res, 'drain', { signal: done.signal }), once(res, 'close', { signal: done.signal })]);
  } finally {
    done.abort();
  }
}

/** A job record as the API answers it: no server paths, the push reduced to what a page shows of the commit. */
export function jobView(record: JobRecord): JobView {
  const push = record.push;
  return {
    id: record.id, app: record.app, sha: record.sha, ref: record.ref, image: record.image,
    trigger: record.trigger, state: record.state, step: record.step, steps: record.steps ?? [], ...(record.tests ? { tests: record.tests } : {}),
    attempts: record.attempts, createdAt: record.createdAt, startedAt: record.startedAt, finishedAt: record.finishedAt,
    error: record.error, supersededBy: record.supersededBy ?? null, retriedBy: record.retriedBy ?? null,
    retryOf: record.retryOf ?? null, result: record.result ?? null,
    commit: push ? { message: push.message?.split('\n', 1)[0]?.slice(0, 300) ?? null, pusher: push.pusher, compareUrl: safeUrl(push.compareUrl) } : null,
  };
}

/** Only http(s) links reach a page: a `javascript:` URL in a webhook must never become a link. */
function safeUrl(url: string | null): string | null {
  return url && /^https?:\/\//i.test(url) ? url : null;
}

/** Longest search text: a commit is 40 digits, a message's words fit. */
const MAX_SEARCH = 200;

/** `?app=&state=&trigger=&q=&before=&limit=` of `GET /api/jobs`, validated; empty values mean "any". */
function jobQuery(query: Record<string, unknown>): Required<Pick<ListOptions, 'limit'>> & ListOptions {
  const app = appFilter(query.app);
  const state = single(query.state, 'state');
  const trigger = single(query.trigger, 'trigger');
  const search = single(query.q, 'q');
  const before = single(query.before, 'before');
  const limitText = single(query.limit, 'limit');
  if (state && !JOB_STATES.includes(state as JobState)) throw new InvalidInputError(`state: one of ${JOB_STATES.join(', ')}`);
  if (trigger && !TRIGGERS.includes(trigger as Trigger)) throw new InvalidInputError(`trigger: one of ${TRIGGERS.join(', ')}`);
  if (search.length > MAX_SEARCH) throw new InvalidInputError(`q: at most ${MAX_SEARCH} characters`);
  if (before && !/^\d{1,15}$/.test(before)) throw new InvalidInputError('before: a job id (the `next` of the page before)');
  const limit = limitText ? Number(limitText) : DEFAULT_JOB_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_JOB_LIMIT) throw new InvalidInputError(`limit: a whole number from 1 to ${MAX_JOB_LIMIT}`);
  return {
    app: app || undefined, state: (state || undefined) as JobState | undefined, trigger: (trigger || undefined) as Trigger | undefined,
    search: search || undefined, before: before || undefined, limit,
  };
}

/** An `?app=` filter of the API: an app's name, or '' for every app; anything else is refused (never read as "every app"). */
export function appFilter(value: unknown): string {
  const app = single(value, 'app');
  if (app && !APP_NAME.test(app)) throw new InvalidInputError(`app: not an app name: ${JSON.stringify(app.slice(0, 80))}`);
  return app;
}

function single(value: unknown, name: string): string {
  if (value === undefined) return '';
  if (typeof value !== 'string') throw new InvalidInputError(`${name}: give it once`);
  return value.trim();
}

/** A 1-based line number (or count) from a query string or header; `fallback` when absent. */
export function lineNumber(value: unknown, name: string, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = typeof value === 'string' && /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(n)) throw new InvalidInputError(`${name}: a whole number, got ${JSON.stringify(String(value).slice(0, 40))}`);
  return n;
}
