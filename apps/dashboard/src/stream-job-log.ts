import { setTimeout as sleep } from 'node:timers/promises';
import type { JobStore } from '@slipway/queue/job-store';
import { FINAL_STATES } from '@slipway/queue/job-types';
import { jobView } from './job-view.js';
import type { SseStream } from './sse-stream.js';

/** How often a live log is polled for new lines (one HGETALL and one LLEN). */
export const LOG_POLL_MS = 200;
/** Lines read from Redis and written per batch, so a 200,000-line backlog streams in bounded memory. */
export const LOG_CHUNK_LINES = 2000;

export interface StreamJobLogOptions {
  store: JobStore;
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
export async function streamJobLog(options: StreamJobLogOptions): Promise<void> {
  const { store, id, sse } = options;
  let next = Math.max(1, options.from);
  let shown = '';
  while (!sse.closed) {
    const record = await store.get(id);
    if (!record) {
      sse.send({ event: 'end', data: { state: null, error: 'the job is gone (trimmed from the history)', lines: next - 1 } });
      return sse.end();
    }
    const seen = `${record.state} ${record.step} ${record.retriedBy} ${record.attempts}`;
    if (seen !== shown) {
      sse.send({ event: 'job', data: jobView(record) });
      shown = seen;
    }
    const length = await store.logLength(id);
    while (next <= length && !sse.closed) {
      const lines = await store.readLog(id, next, Math.min(length, next + LOG_CHUNK_LINES - 1));
      if (lines.length === 0) break;
      const first = next;
      sse.sendAll(lines.map((line, i) => ({ id: first + i, data: line })));
      next += lines.length;
      await sse.drained();
    }
    if (FINAL_STATES.has(record.state)) {
      sse.send({ event: 'end', data: { state: record.state, error: record.error, lines: next - 1 } });
      return sse.end();
    }
    await sleep(options.pollMs ?? LOG_POLL_MS, undefined, { signal: sse.signal }).catch(() => {});
  }
}
