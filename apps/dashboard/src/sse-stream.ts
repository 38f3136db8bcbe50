import type { Response } from 'express';
import { exemptFromDeadline } from './request-deadline.js';

/** Comment line sent when nothing else was, so proxies and browsers keep the connection. */
export const HEARTBEAT_MS = 15_000;

export interface SseEvent {
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
export class SseStream {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly heartbeat: NodeJS.Timeout;
  private lastWrite = Date.now();

  constructor(private readonly res: Response, options: { retryMs?: number } = {}) {
    this.signal = this.controller.signal;
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

  /** Resolves when the socket can take more, or the client is gone. */
  drained(): Promise<void> {
    if (this.closed || !this.res.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
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
    if (!this.closed) this.res.end();
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
