import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isAppName } from '@slipway/core/validate';
import { createGitRunner } from './git-runner.js';
import { withRepoLock } from './repo-lock.js';
import { workPaths } from './work-paths.js';

/** A build tree older than this is a leftover even if a process with its pid is alive (pids are reused). */
export const DEFAULT_BUILD_MAX_AGE_MS = 24 * 3600_000;

export interface PruneOptions {
  /** Absolute; the same `workdir` the checkouts used. */
  workdir: string;
  /** Default {@link DEFAULT_BUILD_MAX_AGE_MS}. */
  maxAgeMs?: number;
  log?: (line: string) => void;
}

export interface PruneResult {
  /** Build trees removed. */
  removed: string[];
}

const BUILD_DIR = /^([a-z0-9][a-z0-9-]{0,62})-([0-9a-f]{12})-(\d+)-[0-9a-f]+$/;

/**
 * Removes what crashed jobs left under `<workdir>/builds` — trees whose
 * process (the pid in their name) is gone, anything unrecognised, and
 * anything older than `maxAgeMs` — then lets every clone cache forget
 * worktrees whose directories are gone. Trees of live processes stay.
 * Meant for worker start-up and a periodic sweep.
 */
export async function prune(options: PruneOptions): Promise<PruneResult> {
  const log = options.log ?? (() => {});
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_BUILD_MAX_AGE_MS;
  const builds = join(options.workdir, 'builds');
  const removed: string[] = [];
  for (const name of await readdir(builds).catch(() => [] as string[])) {
    const path = join(builds, name);
    const match = BUILD_DIR.exec(name);
    const info = await stat(path).catch(() => null);
    if (!info) continue;
    const old = Date.now() - info.mtimeMs > maxAgeMs;
    const owner = match ? Number(match[3]) : null;
    if (!old && owner !== null && isAlive(owner)) continue;
    await rm(path, { recursive: true, force: true });
    removed.push(path);
    log(`removed the leftover build tree ${path}`);
  }
  const repos = join(options.workdir, 'repos');
  for (const entry of await readdir(repos, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isDirectory() || !isAppName(entry.name)) continue;
    const paths = workPaths(options.workdir, entry.name);
    await withRepoLock(paths.lock, async () => {
      await createGitRunner({ gitDir: paths.repo }).probe(['worktree', 'prune']);
    }, { log });
  }
  return { removed };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
