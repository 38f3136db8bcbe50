import { setTimeout as sleep } from 'node:timers/promises';
import { FINAL_STATES, type JobRecord } from './job-types.js';
import type { JobStore } from './job-store.js';

/**
 * Polls a job until it ends and returns its final record. On timeout the
 * error carries the state, the step and the whole log: what anyone waiting
 * on a deploy needs to see why it did not end.
 */
export async function waitForJob(store: JobStore, id: string, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<JobRecord> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = await store.mustGet(id);
    if (FINAL_STATES.has(record.state)) return record;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${record.state} (${record.step}) after ${timeoutMs} ms:\n${(await store.readLog(id)).join('\n')}`);
    await sleep(options.intervalMs ?? 100);
  }
}
