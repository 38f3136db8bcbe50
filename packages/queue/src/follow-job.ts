import { setTimeout as sleep } from 'node:timers/promises';
import { FINAL_STATES, type JobRecord } from './job-types.js';
import type { JobStore } from './job-store.js';

/** What one look at a followed job found. */
export interface JobProgress {
  record: JobRecord;
  /** Log lines new since the last look (none when the log is not followed); the first is line number `from`. */
  lines: string[];
  from: number;
  /** The job has ended: this is the last progress, and `lines` hold the rest of its log. */
  final: boolean;
}

export interface FollowJobOptions {
  /** First log line to read (1-based). Default 1. */
  from?: number;
  /** Read the log too. Default true. */
  log?: boolean;
  /** Time between two looks. Default 200 ms. */
  intervalMs?: number;
  signal?: AbortSignal;
}

/**
 * A job as it runs, one {@link JobProgress} per look, ending with the look
 * that finds it ended (whose lines are the rest of its log). Polls: cheap
 * (one HGETALL and one LRANGE per interval), and it cannot miss a line the
 * way a missed pub/sub message can. The record is read before the lines:
 * once it is final, the lines read next are all there will be.
 */
export async function* followJob(store: JobStore, id: string, options: FollowJobOptions = {}): AsyncGenerator<JobProgress> {
  const log = options.log ?? true;
  let next = Math.max(1, options.from ?? 1);
  for (;;) {
    if (options.signal?.aborted) return;
    const record = await store.mustGet(id);
    const from = next;
    const lines = log ? await store.readLog(id, next) : [];
    next += lines.length;
    const final = FINAL_STATES.has(record.state);
    if (final && log) {
      const rest = await store.readLog(id, next);
      lines.push(...rest);
      next += rest.length;
    }
    yield { record, lines, from, final };
    if (final) return;
    await sleep(options.intervalMs ?? 200, undefined, { signal: options.signal }).catch(() => {});
  }
}

/**
 * Follows a job until it ends and returns its final record. On timeout the
 * error carries the state, the step and the whole log: what anyone waiting
 * on a deploy needs to see why it did not end.
 */
export async function waitForJob(store: JobStore, id: string, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<JobRecord> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;
  for await (const { record, final } of followJob(store, id, { log: false, intervalMs: options.intervalMs ?? 100 })) {
    if (final) return record;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${record.state} (${record.step}) after ${timeoutMs} ms:\n${(await store.readLog(id)).join('\n')}`);
  }
  throw new Error(`job ${id}: following it stopped before it ended`);
}
