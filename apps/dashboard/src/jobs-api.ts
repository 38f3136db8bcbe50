import { once } from 'node:events';
import { Router, type Request, type Response } from 'express';
import type { Logger } from '@slipway/core/logger';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import { withRedis } from '@slipway/queue/redis-errors';
import { jobQuery } from './job-query.js';
import { jobView } from './job-view.js';
import { lineNumber } from './line-number.js';
import { extendDeadline } from './request-deadline.js';
import { SseStream } from './sse-stream.js';
import { streamJobLog } from './stream-job-log.js';
import type { StreamSlots } from './stream-slots.js';

/** Lines one `GET /api/jobs/:id/log` returns when no `limit` is given, and at most. */
export const DEFAULT_LOG_PAGE = 5_000;
export const MAX_LOG_PAGE = 50_000;
/** Lines per Redis read while a log is downloaded. */
const DOWNLOAD_CHUNK = 5_000;

export interface JobsApiOptions {
  queue: DeployQueue;
  slots: StreamSlots;
  logger: Logger;
}

/**
 * `/api/jobs…`: the list (`?app=&state=&limit=`), one job, its log as JSON
 * pages, as a download and as a live SSE stream, and the re-run and cancel
 * actions (`queue.retry` / `queue.cancel`, what `slipway retry` and
 * `slipway cancel` do).
 */
export function jobsApi(options: JobsApiOptions): Router {
  const { queue, slots, logger } = options;
  const store = queue.store;
  const router = Router();

  router.get('/jobs', async (req: Request, res: Response) => {
    const query = jobQuery(req.query);
    const jobs = await withRedis(queue.redis, () => store.list(query));
    res.json({ jobs: jobs.map(jobView) });
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
      return [record, await store.logLength(id), await store.readLog(id, from, from + limit - 1)] as const;
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
    for (let from = 1; from <= total && !res.destroyed; from += DOWNLOAD_CHUNK) {
      extendDeadline(req, res);
      const lines = await store.readLog(id, from, Math.min(total, from + DOWNLOAD_CHUNK - 1));
      if (lines.length === 0) break;
      if (!res.write(`${lines.join('\n')}\n`)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
    }
    res.end();
  });

  router.get('/jobs/:id/log/stream', async (req: Request<{ id: string }>, res: Response) => {
    const { id } = req.params;
    await withRedis(queue.redis, () => store.mustGet(id));
    // The browser's reconnect says where it was; a fresh connection may say where to start.
    const lastEventId = req.get('last-event-id');
    const from = lastEventId !== undefined && /^\d{1,9}$/.test(lastEventId.trim())
      ? Number(lastEventId.trim()) + 1
      : Math.max(1, lineNumber(req.query.from, 'from', 1));
    // The slot first: when the dashboard is full the answer is a plain 503, not a stream.
    const release = slots.take(() => sse.end());
    const sse = new SseStream(res);
    try {
      await streamJobLog({ store, id, from, sse });
    } catch (err) {
      logger.warn({ job: id, err: (err as Error).message }, 'log stream broken off; the browser resumes from its last line');
      sse.end();
    } finally {
      release();
    }
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
