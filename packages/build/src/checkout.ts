import { randomBytes } from 'node:crypto';
import { mkdir, rm, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AppConfig } from '@slipway/config/types';
import { SlipwayError } from '@slipway/core/slipway-error';
import { isProcessAlive, OWN_PID_NAMESPACE } from '@slipway/core/run-command';
import { assertAppName, assertSha, isAppName } from '@slipway/core/validate';
import { assertOnBranch, removeGitLocks, withRepoCache, type RepoCacheOptions, workPaths } from './repo-cache.js';
import { createGitRunner } from './git-runner.js';
import { withRepoLock } from './repo-lock.js';

export interface CheckoutOptions {
  /** Uses `name`, `repo` and `credentials`. */
  app: AppConfig;
  /** The full 40-hex commit; anything else is refused before git runs. */
  sha: string;
  /** Absolute; the clone cache is `<workdir>/repos/<app>`, the tree `<workdir>/builds/<app>-<sha12>-<pid>.<pid namespace>-<random>`. */
  workdir: string;
  /** Receives each line of progress (fetch summary, what was reused), scrubbed of secrets. */
  log?: (line: string) => void;
  /**
   * The branch `sha` must be on: its tip is fetched from the repository and
   * the commit must be reachable from it, else `not_on_branch` and nothing
   * is checked out. A signed webhook proves who sent it, not that its commit
   * belongs to the branch: forges serve any commit by id, a fork's pull
   * request head included.
   */
  branch?: string;
  /** Aborting kills git and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** The whole checkout (the cache's lock, fetches, the tree) within this long: see RepoCacheOptions.timeoutMs. */
  timeoutMs?: number;
  /** Lock and timeout tuning; the defaults suit production. */
  tuning?: Pick<RepoCacheOptions, 'lock' | 'gitIdleTimeoutMs'>;
}

export interface Checkout {
  /** A clean tree of exactly the commit (plus the `.git` file of a linked worktree). */
  dir: string;
  sha: string;
  /** Removes the tree. Idempotent; the cache forgets it at its next use. */
  cleanup(): Promise<void>;
}

/**
 * A clean tree of exactly `sha` for a build context, from the app's cached
 * bare clone: nothing is fetched when the commit is already there; else
 * every branch is fetched (only missing objects travel), then, for a commit
 * no branch reaches, the commit itself. With `branch`, the branches are
 * always fetched and the commit must be on that one (`not_on_branch`).
 * Fails with `sha_not_found` when the repository does not have it,
 * `git_auth_failed`, `repo_not_found`, or `UnavailableError` when it cannot
 * be reached.
 */
export async function checkout(options: CheckoutOptions): Promise<Checkout> {
  const sha = assertSha(options.sha);
  const app = assertAppName(options.app.name, 'app');
  options.signal?.throwIfAborted();
  const log = options.log ?? (() => {});
  const builds = workPaths(options.workdir, app).builds;
  await mkdir(builds, { recursive: true });
  const dir = join(builds, `${app}-${sha.slice(0, 12)}-${process.pid}${OWN_NAMESPACE_ID === null ? '' : `.${OWN_NAMESPACE_ID}`}-${randomBytes(3).toString('hex')}`);
  const cleanup = async () => {
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await withRepoCache({ app: options.app, workdir: options.workdir, log, signal: options.signal, timeoutMs: options.timeoutMs, ...options.tuning }, async (cache) => {
      if (options.branch !== undefined) {
        await cache.fetchBranches();
        // Not on any branch: in the repository under another ref (a pull request's head: not_on_branch below), or not at all.
        if (!(await cache.hasCommit(sha)) && !(await cache.fetchCommit(sha))) {
          throw new SlipwayError('sha_not_found', `commit ${sha} is not in ${cache.repo.url}`, { fault: 'commit' });
        }
        await assertOnBranch(cache, sha, options.branch);
        log(`commit ${sha.slice(0, 12)} is on ${options.branch}`);
      } else if (await cache.hasCommit(sha)) {
        log(`commit ${sha.slice(0, 12)} is already in the clone cache; nothing to fetch`);
      } else {
        await cache.fetchBranches();
        if (!(await cache.hasCommit(sha)) && !(await cache.fetchCommit(sha))) {
          throw new SlipwayError('sha_not_found', `commit ${sha} is not in ${cache.repo.url}`, { fault: 'commit' });
        }
      }
      await cache.collectGarbage();
      // Local, and silent while it writes the tree: a large one may take minutes on a slow disk.
      await cache.localGit.run(['worktree', 'add', '--detach', '--quiet', '--', dir, sha], { action: 'worktree add', stream: true });
    });
  } catch (err) {
    await cleanup();
    throw err;
  }
  log(`checked out ${sha.slice(0, 12)} into ${dir}`);
  return { dir, sha, cleanup };
}

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

/** `<app>-<sha12>-<pid>[.<pid namespace>]-<random>`: a tree of an older Slipway names no namespace. */
const BUILD_DIR = /^([a-z0-9][a-z0-9-]{0,62})-([0-9a-f]{12})-(\d+)(?:\.(\d+))?-[0-9a-f]+$/;
/** The number of this process's pid namespace (`pid:[4026531836]` → 4026531836), written in its tree's name. */
const OWN_NAMESPACE_ID = OWN_PID_NAMESPACE?.match(/\d+/)?.[0] ?? null;

/**
 * Removes what crashed jobs left under `<workdir>/builds` — trees whose
 * process (the pid in their name) is gone, anything unrecognised, and
 * anything older than `maxAgeMs` — then lets every clone cache forget
 * worktrees whose directories are gone. Trees of live processes stay; a
 * tree made in another pid namespace (a worker in another container
 * sharing the workdir) is judged by its age alone, as its pid means
 * nothing here.
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
    const elsewhere = match?.[4] !== undefined && match[4] !== OWN_NAMESPACE_ID;
    if (!old && owner !== null && (elsewhere || isProcessAlive(owner))) continue;
    await rm(path, { recursive: true, force: true });
    removed.push(path);
    log(`removed the leftover build tree ${path}`);
  }
  const repos = join(options.workdir, 'repos');
  for (const entry of await readdir(repos, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isDirectory() || !isAppName(entry.name)) continue;
    const paths = workPaths(options.workdir, entry.name);
    await withRepoLock(paths.lock, async ({ recovered }) => {
      // Whoever breaks a dead holder's lock clears what its git left (a ref's .lock would fail every later fetch).
      if (recovered) await removeGitLocks(paths.repo, log);
      // Tidying only: a clone that cannot be pruned now is pruned by its next fetch (or fails that, loudly).
      await createGitRunner({ gitDir: paths.repo }).probe(['worktree', 'prune']).catch(() => null);
    }, { log });
  }
  return { removed };
}

