import { setTimeout as sleep } from 'node:timers/promises';
import { FINAL_STATES, type JobRecord } from './job-types.js';
import type { JobStore } from './job-store.js';

export interface LogBatch {
  /** The new lines; the first is line number `from`. */
  lines: string[];
  from: number;
  record: JobRecord;
}

/**
 * A job's log from line `from` on, batch by batch as it grows, ending once
 * the job has ended and every line is read. Polls: cheap (one LLEN per
 * interval), and it cannot miss a line the way a missed pub/sub message can.
 */
export async function* followLog(store: JobStore, id: string, options: { from?: number; intervalMs?: number; signal?: AbortSignal } = {}): AsyncGenerator<LogBatch> {
  let next = Math.max(1, options.from ?? 1);
  for (;;) {
    if (options.signal?.aborted) return;
    // Read the state before the lines: if it is final now, the lines read next are all there will be.
    const record = await store.mustGet(id);
    const lines = await store.readLog(id, next);
    if (lines.length > 0) {
      yield { lines, from: next, record };
      next += lines.length;
    }
    if (FINAL_STATES.has(record.state)) {
      const rest = await store.readLog(id, next);
      if (rest.length > 0) yield { lines: rest, from: next, record };
      return;
    }
    await sleep(options.intervalMs ?? 200, undefined, { signal: options.signal }).catch(() => {});
  }
}
