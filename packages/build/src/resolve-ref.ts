import type { AppConfig } from '@slipway/config/types';
import { InvalidInputError, SlipwayError } from '@slipway/core/slipway-error';
import { SHA_PREFIX, assertAppName, branchOfRef, isBranchName, isSha, quote } from '@slipway/core/validate';
import { assertOnBranch, withRepoCache, type RepoCache, type RepoCacheOptions } from './repo-cache.js';

export interface ResolveRefOptions {
  /** Uses `name`, `repo` and `credentials`. */
  app: AppConfig;
  /** A branch (`master`, `refs/heads/master`) or a commit id of 7 to 40 lowercase hex digits. */
  ref: string;
  /** Absolute; shares the clone cache with {@link checkout}. */
  workdir: string;
  log?: (line: string) => void;
  signal?: AbortSignal;
  tuning?: Pick<RepoCacheOptions, 'lock' | 'gitIdleTimeoutMs'>;
  /** When set, the resolved commit must be reachable from this branch (`not_on_branch`), as a deploy's checkout will require. */
  onBranch?: string;
}

/**
 * A branch or a (possibly abbreviated) commit id → the full 40-hex sha,
 * after fetching. A branch wins over a commit id that looks the same, as in
 * git. Unknown → `unknown_ref`; an abbreviation matching several commits →
 * `ambiguous_ref`; anything that is neither a branch name nor hex →
 * `invalid_ref` before git runs.
 */
export async function resolveRef(options: ResolveRefOptions): Promise<string> {
  assertAppName(options.app.name, 'app');
  const ref = options.ref;
  const branch = branchOfRef(ref) ?? (isBranchName(ref) ? ref : null);
  const commit = typeof ref === 'string' && SHA_PREFIX.test(ref) ? ref : null;
  if (branch === null && commit === null) {
    throw new InvalidInputError(`ref ${quote(ref)} is neither a branch name nor a commit id (7-40 lowercase hex digits)`, { code: 'invalid_ref' });
  }
  // Its fetch within the app's build_timeout_s, as a checkout's: a deploy that starts with no cache clones here.
  const timeoutMs = options.app.build_timeout_s ? options.app.build_timeout_s * 1000 : undefined;
  return withRepoCache({ app: options.app, workdir: options.workdir, log: options.log, signal: options.signal, timeoutMs, ...options.tuning }, async (cache) => {
    await cache.fetchBranches();
    const sha = await resolveIn(cache, branch, commit);
    if (options.onBranch !== undefined) await assertOnBranch(cache, sha, options.onBranch);
    return sha;
  });
}

async function resolveIn(cache: RepoCache, branch: string | null, commit: string | null): Promise<string> {
  if (branch !== null) {
    const sha = await cache.git.probe(['rev-parse', '--verify', '--quiet', '--end-of-options', `refs/heads/${branch}^{commit}`]);
    if (sha && isSha(sha)) return sha;
  }
  if (commit !== null) {
    if (isSha(commit) && ((await cache.hasCommit(commit)) || (await cache.fetchCommit(commit)))) return commit;
    const found = await cache.git.probe(['rev-parse', '--verify', '--quiet', '--end-of-options', `${commit}^{commit}`]);
    if (found && isSha(found)) return found;
    const many = await cache.git.probe(['rev-parse', '--disambiguate=' + commit]);
    const candidates: string[] = [];
    for (const id of (many ?? '').split('\n').filter(isSha).slice(0, 10)) {
      if ((await cache.git.probe(['cat-file', '-t', '--end-of-options', id])) === 'commit') candidates.push(id);
    }
    if (candidates.length > 1) {
      throw new SlipwayError('ambiguous_ref', `commit id ${commit} is ambiguous in ${cache.repo.url}: ${candidates.slice(0, 5).map((s) => s.slice(0, 12)).join(', ')}`, { fault: 'request' });
    }
  }
  throw new SlipwayError('unknown_ref', `${branch !== null ? `branch ${branch}` : `commit ${commit}`} not found in ${cache.repo.url}`, { fault: 'request' });
}

/** How many ancestors of a live commit are remembered as stale (see {@link recentHistory}). */
export const LIVE_HISTORY = 2000;

/**
 * `sha` and up to `limit - 1` of its ancestors, newest first, from the
 * app's clone cache (no fetch): what a push must not roll the app back to.
 * Empty when the cache does not have the commit (a tree pushed to a
 * Slipway remote). Throws when the cache cannot be read (its lock, a
 * damaged clone): the caller says so, since later pushes of those commits
 * are then not known stale.
 */
export async function recentHistory(options: Pick<ResolveRefOptions, 'app' | 'workdir' | 'signal' | 'tuning'> & { sha: string; limit?: number }): Promise<string[]> {
  if (!isSha(options.sha)) return [];
  return withRepoCache({ app: options.app, workdir: options.workdir, signal: options.signal, ...options.tuning }, async (cache) => {
    if (!(await cache.hasCommit(options.sha))) return [];
    const listed = await cache.git.probe(['rev-list', `--max-count=${options.limit ?? LIVE_HISTORY}`, '--end-of-options', options.sha]);
    return (listed ?? '').split('\n').filter(isSha);
  });
}

/**
 * Whether `sha` is `of` or one of its ancestors, as the app's clone cache
 * knows them (no fetch): the whole history, where the live release's
 * remembered ancestry ({@link recentHistory}) is its newest
 * {@link LIVE_HISTORY}. False when the cache lacks either commit (one it
 * never fetched is no ancestor of what it deployed). Throws when the cache
 * cannot be read.
 */
export async function isAncestor(options: Pick<ResolveRefOptions, 'app' | 'workdir' | 'signal' | 'tuning'> & { sha: string; of: string }): Promise<boolean> {
  if (!isSha(options.sha) || !isSha(options.of)) return false;
  if (options.sha === options.of) return true;
  return withRepoCache({ app: options.app, workdir: options.workdir, signal: options.signal, ...options.tuning }, async (cache) => {
    if (!(await cache.hasCommit(options.sha)) || !(await cache.hasCommit(options.of))) return false;
    return cache.isAncestor(options.sha, options.of);
  });
}
