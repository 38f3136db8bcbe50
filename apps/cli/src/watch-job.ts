import { setTimeout as sleep } from 'node:timers/promises';
import { FINAL_STATES, type JobRecord } from '@slipway/queue/job-types';
import type { JobStore } from '@slipway/queue/job-store';
import { duration, short } from './output/format.js';
import { Spinner } from './output/spinner.js';
import type { Terminal } from './output/terminal.js';

export interface WatchOptions {
  /** Print the job's log lines as they arrive (from line `from`). */
  showLog: boolean;
  from?: number;
  intervalMs?: number;
  /** Prefix every printed line (the git hook prints through git's "remote:" lines). */
  prefix?: string;
}

/**
 * Follows a job until it ends: a spinner with its step and elapsed time
 * on a terminal (plain step lines otherwise), its log lines if asked, and a
 * closing line with the outcome. Returns the final record.
 */
export async function watchJob(store: JobStore, id: string, terminal: Terminal, options: WatchOptions): Promise<JobRecord> {
  const spinner = new Spinner(terminal);
  let next = options.from ?? 1;
  let lastStep = '';
  const started = Date.now();
  const print = (line: string) => spinner.above(`${options.prefix ?? ''}${line}`);
  for (;;) {
    const record = await store.mustGet(id);
    if (options.showLog) {
      const lines = await store.readLog(id, next);
      for (const line of lines) print(line);
      next += lines.length;
    }
    const final = FINAL_STATES.has(record.state);
    if (!final) {
      const label = record.state === 'waiting' ? 'waiting' : record.step;
      const since = record.startedAt ? Date.parse(record.startedAt) : Date.parse(record.createdAt);
      if (terminal.interactive) spinner.update(`job ${id} · ${record.app} · ${label} · ${duration(Date.now() - since)}`);
      else if (label !== lastStep) spinner.update(`job ${id}: ${label}`);
      lastStep = label;
    }
    if (final) {
      if (options.showLog) {
        for (const line of await store.readLog(id, next)) print(line);
      }
      spinner.stop(outcomeLine(record, Date.now() - started));
      return record;
    }
    await sleep(options.intervalMs ?? 200);
  }
}

export function outcomeLine(record: JobRecord, elapsedMs?: number): string {
  const took = record.startedAt && record.finishedAt ? duration(Date.parse(record.finishedAt) - Date.parse(record.startedAt)) : elapsedMs !== undefined ? duration(elapsedMs) : '';
  switch (record.state) {
    case 'completed':
      return `job ${record.id} completed: ${record.app} is live at ${record.sha ? short(record.sha) : record.result?.image ?? ''}${took ? ` (${took})` : ''}`;
    case 'superseded':
      return `job ${record.id} superseded by job ${record.supersededBy}`;
    case 'cancelled':
      return `job ${record.id} cancelled`;
    default:
      return `job ${record.id} failed: ${record.error ?? 'unknown error'}`;
  }
}
