import { readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { prune } from '@slipway/build/checkout';
import type { JobStore } from '@slipway/queue/job-store';

/*
 * What jobs leave on the worker's disk when they never finish in the
 * worker: a build tree of a worker killed mid-build, a pushed tree of a
 * `git push` whose job was cancelled or given up before it ran. Swept at
 * start and with the job history (hourly).
 */

/** A pushed tree younger than this is left alone: its hook may not have queued its job yet. */
export const INCOMING_GRACE_MS = 10 * 60_000;

export async function sweepLeftovers(options: { store: JobStore; workdir: string; log: (line: string) => void; graceMs?: number }): Promise<{ builds: number; incoming: number }> {
  const { removed } = await prune({ workdir: options.workdir, log: options.log });
  return { builds: removed.length, incoming: await sweepIncoming(options) };
}

/** Pushed trees (`<workdir>/incoming`) that no waiting or running job names. */
async function sweepIncoming(options: { store: JobStore; workdir: string; log: (line: string) => void; graceMs?: number }): Promise<number> {
  const dir = join(options.workdir, 'incoming');
  const names = await readdir(dir).catch(() => [] as string[]);
  if (names.length === 0) return 0;
  // By name (each push's is its own): the hook may reach the workdir by another path (a symlink) than the worker.
  // Waiting read again last: a job put back from active to waiting (a retry) between the first two reads is in neither.
  const named = new Set<string>();
  for (const state of ['waiting', 'active', 'waiting'] as const) {
    for (const job of await options.store.list({ state, trigger: 'git-push', limit: 500 })) if (job.sourceDir) named.add(basename(job.sourceDir));
  }
  let removed = 0;
  for (const name of names) {
    const path = join(dir, name);
    if (named.has(name)) continue;
    const info = await stat(path).catch(() => null);
    if (!info || Date.now() - info.mtimeMs < (options.graceMs ?? INCOMING_GRACE_MS)) continue;
    await rm(path, { recursive: true, force: true });
    removed++;
    options.log(`removed the pushed tree ${path}: no waiting or running job names it`);
  }
  return removed;
}
