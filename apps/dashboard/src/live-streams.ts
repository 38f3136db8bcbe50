import { setTimeout as sleep } from 'node:timers/promises';
import { Router, type Request, type Response } from 'express';
import type { Redis } from 'ioredis';
import type { Logger } from '@slipway/core/logger';
import { SlipwayError } from '@slipway/core/slipway-error';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import type { JobEvent, JobStore } from '@slipway/queue/job-store';
import { FINAL_STATES } from '@slipway/queue/job-types';
import { withRedis } from '@slipway/queue/redis';
import type { AuthLocals, SessionAuth } from './auth.js';
import { exemptFromDeadline } from './http-guards.js';
import { appFilter, jobView, lineNumber } from './jobs-api.js';

// What the dashboard keeps open: Server-Sent Events responses, the slots
// that bound how many there are, a job's log followed line by line, and
// the one Redis subscription that tells every open page a job changed.

/** A client of `/api/events` this far behind (bytes buffered) is dropped; its browser reconnects and resyncs. */
export const MAX_BUFFERED_BYTES = 1 << 20;
/**
 * A log stream whose socket did not drain for this long is dropped (it
 * waits for its reader, which may never read: a script that stopped, a
 * laptop asleep); so is an ended stream that could not hand its last bytes
 * over in this time. Long: the socket drains only once the kernel's send
 * buffer has room again, after the reader took a good part of it (on
 * loopback, megabytes), so a slow reader is far from this. A browser that
 * wakes reconnects from its last line.
 */
export const STALLED_READER_MS = 5 * 60_000;

export interface StreamsApiOptions {
  /** Ends the streams of a session that is signed out or expires. */
  auth: SessionAuth;
  queue: DeployQueue;
  hub: JobEventHub;
  slots: StreamSlots;
  logger: Logger;
  /** Default {@link STALLED_READER_MS}. */
  stalledReaderMs?: number;
}

/**
 * The two endpoints that stay open. `GET /api/jobs/:id/log/stream`: a
 * job's log from a line on (see {@link streamJobLog}). `GET
 * /api/events[?app=A]`: job changes (`job` events carrying `{id, app,
 * state, step}`) for live lists; there is no history behind it, so a page
 * reloads its list when the stream (re)opens (the `ready` event) and when
 * told to `resync`.
 */
export function streamsApi(options: StreamsApiOptions): Router {
  const { auth, queue, hub, slots, logger } = options;
  const stalledMs = options.stalledReaderMs ?? STALLED_READER_MS;
  const router = Router();
  /** A stream lives no longer than the session that opened it (a Bearer token's lives as long as its client). */
  const boundToSession = (res: Response, stream: SseStream) => {
    const who = (res.locals as AuthLocals).auth;
    // A stream whose client left during the route's first read is over: a watch now would never be unwatched.
    if (who?.kind !== 'session' || stream.closed) return;
    const unwatch = auth.watch(who.session, () => stream.end());
    stream.signal.addEventListener('abort', unwatch, { once: true });
  };

  // HEAD says whether a stream is there, and ends: as a GET it would hold a stream slot until its client left.
  router.head('/jobs/:id/log/stream', async (req: Request<{ id: string }>, res: Response) => {
    await withRedis(queue.redis, () => queue.store.mustGet(req.params.id));
    headOfStream(res);
  });
  router.head('/events', (req: Request, res: Response) => {
    eventsApp(req);
    headOfStream(res);
  });

  router.get('/jobs/:id/log/stream', async (req: Request<{ id: string }>, res: Response) => {
    const { id } = req.params;
    await withRedis(queue.redis, () => queue.store.mustGet(id));
    // The browser's reconnect says where it was; a fresh connection may say where to start.
    const lastEventId = req.get('last-event-id');
    const from = lastEventId !== undefined && /^\d{1,9}$/.test(lastEventId.trim())
      ? Number(lastEventId.trim()) + 1
      : Math.max(1, lineNumber(req.query.from, 'from', 1));
    // The slot first: when the dashboard is full the answer is a plain 503, not a stream.
    const release = slots.take(() => sse.end());
    const sse = new SseStream(res, { stalledMs });
    boundToSession(res, sse);
    try {
      await streamJobLog({ store: queue.store, read: (op) => withRedis(queue.redis, op), id, from, sse });
    } catch (err) {
      logger.warn({ job: id, err: (err as Error).message }, 'log stream broken off; the browser resumes from its last line');
      sse.end();
    } finally {
      release();
    }
  });

  router.get('/events', (req: Request, res: Response) => {
    const app = eventsApp(req);
    // The slot first: when the dashboard is full the answer is a plain 503, not a stream.
    const release = slots.take(() => stream.end());
    const stream = new SseStream(res, { retryMs: 2000, stalledMs });
    boundToSession(res, stream);
    const stop = hub.listen((event) => {
      if (event.kind === 'resync') stream.send({ event: 'resync', data: {} });
      else if (app === null || event.job.app === app) stream.send({ event: 'job', data: event.job });
      // Dropped, not ended: end() keeps what is buffered and the socket open, for a reader that may never read.
      if (res.writableLength > MAX_BUFFERED_BYTES) stream.drop();
    });
    const cleanUp = () => {
      stop();
      release();
    };
    // A client gone before the stream began has aborted its signal already: a listener added now would never run.
    if (stream.closed) cleanUp();
    else stream.signal.addEventListener('abort', cleanUp, { once: true });
    // `ready` (the page's cue to reload its list) only once nothing published from now on can be missed.
    hub.ready().then(() => stream.send({ event: 'ready', data: { app } }), () => stream.end());
  });

  return router;
}

/** `/api/events`' `app`, or null for every app. */
function eventsApp(req: Request): string | null {
  return appFilter(req.query.app) || null;
}

function headOfStream(res: Response): void {
  res.status(200).setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end();
}

/** Comment line sent when nothing else was, so proxies and browsers keep the connection. */
export const HEARTBEAT_MS = 15_000;

interface SseEvent {
  /** Becomes the browser's `lastEventId`, sent back as `Last-Event-ID` on reconnect. */
  id?: string | number;
  /** Event type; the browser's default is `message`. */
  event?: string;
  /** Sent JSON-encoded on one `data:` line, so CR and LF in it cannot break the framing. */
  data: unknown;
}

/**
 * One Server-Sent Events response: headers that stop buffering on the way,
 * a reconnection delay for the browser, heartbeats, back-pressure, and an
 * AbortSignal that fires when the client goes away so whoever feeds the
 * stream stops (no work and no memory held for a closed connection).
 * Streams live as long as their client: no request deadline.
 */
class SseStream {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly heartbeat: NodeJS.Timeout;
  private lastWrite = Date.now();
  private readonly stalledMs: number;

  constructor(private readonly res: Response, options: { retryMs?: number; stalledMs?: number } = {}) {
    this.signal = this.controller.signal;
    this.stalledMs = options.stalledMs ?? STALLED_READER_MS;
    exemptFromDeadline(res);
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-store, no-transform');
    res.setHeader('X-Accel-Buffering', 'no');
    res.setHeader('Connection', 'keep-alive');
    res.flushHeaders();
    res.socket?.setNoDelay(true);
    const stop = () => this.stop();
    res.once('close', stop);
    res.once('error', stop);
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastWrite >= HEARTBEAT_MS - 100) this.write(': keep-alive\n\n');
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
    this.write(`retry: ${options.retryMs ?? 1000}\n\n`);
    // A client gone before the stream began (during the route's first Redis read) sent its 'close' already.
    if (res.destroyed) this.stop();
  }

  get closed(): boolean {
    return this.signal.aborted;
  }

  /** Queues one event; false when the socket's buffer is full (await {@link drained}). */
  send(event: SseEvent): boolean {
    let frame = '';
    if (event.id !== undefined) frame += `id: ${event.id}\n`;
    if (event.event !== undefined) frame += `event: ${event.event}\n`;
    frame += `data: ${JSON.stringify(event.data)}\n\n`;
    return this.write(frame);
  }

  /** Several events in one write. */
  sendAll(events: readonly SseEvent[]): boolean {
    let frames = '';
    for (const event of events) {
      if (event.id !== undefined) frames += `id: ${event.id}\n`;
      if (event.event !== undefined) frames += `event: ${event.event}\n`;
      frames += `data: ${JSON.stringify(event.data)}\n\n`;
    }
    return frames.length > 0 ? this.write(frames) : true;
  }

  /** Resolves when the socket can take more, or the client is gone (dropped when it did not drain for `stalledMs`). */
  drained(): Promise<void> {
    if (this.closed || !this.res.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const stalled = setTimeout(() => this.drop(), this.stalledMs);
      stalled.unref();
      const done = () => {
        clearTimeout(stalled);
        this.res.off('drain', done);
        this.signal.removeEventListener('abort', done);
        resolve();
      };
      this.res.once('drain', done);
      this.signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Ends the response (the browser's EventSource would reconnect unless told otherwise first). */
  end(): void {
    if (!this.closed) {
      this.res.end();
      // What is still buffered goes to a reader that reads; the socket of one that never does is not kept for ever.
      if (this.res.writableLength > 0) {
        const stalled = setTimeout(() => this.res.destroy(), this.stalledMs);
        stalled.unref();
        this.res.once('close', () => clearTimeout(stalled));
      }
    }
    this.stop();
  }

  /** Closes the connection at once, dropping what is buffered: for a reader too slow to keep. */
  drop(): void {
    this.res.destroy();
    this.stop();
  }

  private write(text: string): boolean {
    if (this.closed) return false;
    this.lastWrite = Date.now();
    return this.res.write(text);
  }

  private stop(): void {
    clearInterval(this.heartbeat);
    if (!this.controller.signal.aborted) this.controller.abort();
  }
}

/** Live connections (log streams and event streams) one dashboard serves at most. */
export const MAX_STREAMS = 200;

/**
 * Counts open streams so a flood of them is refused (503) instead of
 * exhausting memory, and ends them all at shutdown (they never go idle on
 * their own; browsers reconnect to the next instance and resume).
 */
export class StreamSlots {
  private readonly open = new Set<() => void>();

  constructor(private readonly max = MAX_STREAMS) {}

  get count(): number {
    return this.open.size;
  }

  /**
   * Takes a slot for a stream that `end` stops, or throws `too_many_streams`.
   * The returned function gives the slot back (idempotent).
   */
  take(end: () => void): () => void {
    if (this.open.size >= this.max) throw new SlipwayError('too_many_streams', `this dashboard already serves ${this.max} live streams; try again shortly`, { status: 503 });
    const entry = () => end();
    this.open.add(entry);
    return () => void this.open.delete(entry);
  }

  /** Ends every open stream. */
  endAll(): void {
    for (const end of [...this.open]) end();
    this.open.clear();
  }
}

/** How often a live log is polled for new lines (one HGETALL and one LLEN). */
export const LOG_POLL_MS = 200;
/** Lines read from Redis per batch, so a 200,000-line backlog streams in bounded memory ... */
export const LOG_CHUNK_LINES = 500;
/** ... and bytes, whatever the lines' length (500 lines of 16 KB would be 8 MB held per slow reader). */
export const LOG_CHUNK_BYTES = 1024 * 1024;
/** Bytes of lines written at once, each slice after the socket drained: a slow reader holds about one slice. */
export const LOG_SLICE_BYTES = 256 * 1024;

interface StreamJobLogOptions {
  store: JobStore;
  /**
   * Each Redis read, bounded (withRedis): a Redis that stops answering on an
   * open connection breaks the stream off, and the browser's reconnect gets
   * the 503 every other call gets, rather than a stream frozen behind its
   * heartbeats that holds its slot after its reader left.
   */
  read: <T>(operation: () => Promise<T>) => Promise<T>;
  id: string;
  /** First line to send (1-based): `Last-Event-ID` + 1 on a reconnect. */
  from: number;
  sse: SseStream;
  pollMs?: number;
}

/**
 * A job's log as Server-Sent Events: one `message` event per line whose id
 * is its line number (so a reconnect resumes with no gap and no duplicate),
 * a `job` event whenever the job's state or step changes, and a final `end`
 * event once the job has ended and every line is sent; then the response
 * ends. The state is read before the lines: once it is final, the lines
 * read after it are all there will be. Returns when done or when the
 * client goes away.
 */
async function streamJobLog(options: StreamJobLogOptions): Promise<void> {
  const { store, read, id, sse } = options;
  let next = Math.max(1, options.from);
  let shown = '';
  while (!sse.closed) {
    const record = await read(() => store.get(id));
    if (!record) {
      sse.send({ event: 'end', data: { state: null, error: 'the job is gone (trimmed from the history)', lines: next - 1 } });
      return sse.end();
    }
    const seen = `${record.state} ${record.step} ${record.retriedBy} ${record.attempts}`;
    if (seen !== shown) {
      sse.send({ event: 'job', data: jobView(record) });
      shown = seen;
    }
    const length = await read(() => store.logLength(id));
    while (next <= length && !sse.closed) {
      const lines = await read(() => store.readLogBounded(id, next, Math.min(length, next + LOG_CHUNK_LINES - 1), LOG_CHUNK_BYTES));
      if (lines.length === 0) break;
      for (let from = 0; from < lines.length && !sse.closed;) {
        let to = from + 1;
        for (let bytes = lines[from]!.length; to < lines.length && bytes < LOG_SLICE_BYTES; to++) bytes += lines[to]!.length;
        const first = next;
        sse.sendAll(lines.slice(from, to).map((line, i) => ({ id: first + i, data: line })));
        next += to - from;
        from = to;
        await sse.drained();
      }
    }
    if (FINAL_STATES.has(record.state)) {
      sse.send({ event: 'end', data: { state: record.state, error: record.error, lines: next - 1 } });
      return sse.end();
    }
    await sleep(options.pollMs ?? LOG_POLL_MS, undefined, { signal: sse.signal }).catch(() => {});
  }
}

/** What listeners get: a job changed, or (after Redis came back) "you may have missed some: reload". */
export type HubEvent = { kind: 'job'; job: JobEvent } | { kind: 'resync' };

/**
 * One Redis subscription to the job events channel, shared by every live
 * page: N browsers cost one connection, not N. Created on the first
 * listener. A reconnect re-subscribes on its own (ioredis) and tells every
 * listener to resync, since messages published meanwhile are lost.
 */
export class JobEventHub {
  private subscriber: Redis | undefined;
  private subscribed: Promise<void> | undefined;
  private readonly listeners = new Set<(event: HubEvent) => void>();

  constructor(private readonly redis: Redis, private readonly channel: string, private readonly logger: Logger) {}

  /** Adds a listener; returns the function that removes it. */
  listen(listener: (event: HubEvent) => void): () => void {
    this.listeners.add(listener);
    this.connect();
    return () => void this.listeners.delete(listener);
  }

  /** Resolves once the subscription is in place (so nothing published from now on is missed). */
  ready(): Promise<void> {
    this.connect();
    return this.subscribed!;
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  close(): void {
    this.listeners.clear();
    this.subscriber?.disconnect();
    this.subscriber = undefined;
    this.subscribed = undefined;
  }

  private connect(): void {
    if (this.subscriber) return;
    const subscriber = this.redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, lazyConnect: false });
    this.subscriber = subscriber;
    let connections = 0;
    subscriber.on('error', () => {});
    subscriber.on('ready', () => {
      if (connections++ === 0) return;
      // Subscribing again is harmless and says when the subscription is back; only then is a reload complete.
      subscriber.subscribe(this.channel).then(() => {
        this.logger.info('job events: Redis is back; live pages resync');
        this.emit({ kind: 'resync' });
      }, () => {});
    });
    subscriber.on('message', (_channel: string, message: string) => {
      let event: Partial<JobEvent> & { cancel?: boolean };
      try {
        event = JSON.parse(message) as Partial<JobEvent>;
      } catch {
        return;
      }
      if (typeof event.id !== 'string' || typeof event.app !== 'string' || typeof event.state !== 'string') return;
      this.emit({ kind: 'job', job: { id: event.id, app: event.app, state: event.state, step: event.step ?? 'queued' } });
    });
    this.subscribed = subscriber.subscribe(this.channel).then(() => undefined);
    this.subscribed.catch((err: Error) => this.logger.warn({ err: err.message }, 'job events: cannot subscribe'));
  }

  private emit(event: HubEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}
