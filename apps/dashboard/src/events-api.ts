import { Router, type Request, type Response } from 'express';
import { isAppName } from '@slipway/core/validate';
import type { JobEventHub } from './job-event-hub.js';
import { SseStream } from './sse-stream.js';
import type { StreamSlots } from './stream-slots.js';

/** A client this far behind (bytes buffered) is dropped; its browser reconnects and resyncs. */
export const MAX_BUFFERED_BYTES = 1 << 20;

/**
 * `GET /api/events[?app=A]`: job changes as Server-Sent Events (`job`
 * events carrying `{id, app, state, step}`), for live lists. There is no
 * history behind it, so a page reloads its list when the stream (re)opens
 * (the `ready` event) and when told to `resync`.
 */
export function eventsApi(options: { hub: JobEventHub; slots: StreamSlots }): Router {
  const router = Router();
  router.get('/events', (req: Request, res: Response) => {
    const app = typeof req.query.app === 'string' && isAppName(req.query.app) ? req.query.app : null;
    // The slot first: when the dashboard is full the answer is a plain 503, not a stream.
    const release = options.slots.take(() => stream.end());
    const stream = new SseStream(res, { retryMs: 2000 });
    const stop = options.hub.listen((event) => {
      if (event.kind === 'resync') stream.send({ event: 'resync', data: {} });
      else if (app === null || event.job.app === app) stream.send({ event: 'job', data: event.job });
      if (res.writableLength > MAX_BUFFERED_BYTES) stream.end();
    });
    stream.signal.addEventListener('abort', () => {
      stop();
      release();
    }, { once: true });
    // `ready` (the page's cue to reload its list) only once nothing published from now on can be missed.
    options.hub.ready().then(() => stream.send({ event: 'ready', data: { app } }), () => stream.end());
  });
  return router;
}
