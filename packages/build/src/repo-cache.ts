import { mkdir, readdir, rm, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AppConfig } from '@slipway/config/types';
import { InvalidInputError, isSlipwayError, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { assertSha, isBranchName, quote, assertAppName } from '@slipway/core/validate';
import { createGitRunner, isCorruptObjectError, type GitRunner } from './git-runner.js';
import { withRepoLock, type RepoLockOptions } from './repo-lock.js';

/** Every branch of the remote, mirrored as the cache's own branches. */
const BRANCHES = '+refs/heads/*:refs/heads/*';
const NO_SUCH_REF = /not our ref|couldn't find remote ref|no such remote ref|unadvertised object/i;

export interface RepoCacheOptions {
  app: Pick<AppConfig, 'name' | 'repo' | 'credentials'>;
  /** Absolute; the cache is `<workdir>/repos/<app>`. */
  workdir: string;
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** Lock tuning; tests shorten the waits. */
  lock?: Pick<RepoLockOptions, 'waitMs' | 'staleMs'>;
  /** See {@link DEFAULT_GIT_IDLE_TIMEOUT_MS}. */
  gitIdleTimeoutMs?: number;
  /**
   * All of it (the cache's lock, fetches, what `fn` does) within this long,
   * else git is stopped and it fails `unavailable`. Default
   * {@link DEFAULT_REPO_CACHE_TIMEOUT_MS}. git is otherwise stopped only when
   * it has printed nothing for a while, and a remote sending a trickle
   * keeps its progress meter going for ever.
   */
  timeoutMs?: number;
}

/** How long a use of the clone cache may take unless told (a checkout and a ref's resolution are given the app's build_timeout_s). */
export const DEFAULT_REPO_CACHE_TIMEOUT_MS = 30 * 60_000;

/** The app's bare clone, held exclusively for the duration of a callback. */
export interface RepoCache {
  dir: string;
  repo: RepoUrl;
  git: GitRunner;
  /**
   * For work that stays on this machine and may print nothing for long (a
   * checkout of a large tree, a repack): no remote, and an idle bound of
   * {@link LOCAL_IDLE_TIMEOUT_MS} rather than the network's.
   */
  localGit: GitRunner;
  hasCommit(sha: string): Promise<boolean>;
  /**
   * `git gc --auto` (what a fetch would do itself, but fetches here run
   * without it): a no-op until enough packs pile up, then a repack that may
   * take minutes, so only a worker's checkout asks for it, not an operator
   * waiting on `slipway deploy`. A failure is a warning in the log.
   */
  collectGarbage(): Promise<void>;
  /** Fetches every branch; git transfers only objects the cache lacks. */
  fetchBranches(): Promise<void>;
  /** Asks the remote for one commit by id (one no branch reaches); false when it will not give it. */
  fetchCommit(sha: string): Promise<boolean>;
  /** Whether `sha` is reachable from the cache's copy of `branch` (fetch first to ask about the remote's). */
  isOnBranch(sha: string, branch: string): Promise<boolean>;
  /** Whether `sha` is `of` (a commit id, or a ref the cache holds) or one of its ancestors. */
  isAncestor(sha: string, of: string): Promise<boolean>;
}

/**
 * Opens (creating or repairing) the per-app bare clone under its lock and
 * runs `fn`. The remote's address is given to each fetch and never stored
 * in the cache's config.
 */
export async function withRepoCache<T>(options: RepoCacheOptions, fn: (cache: RepoCache) => Promise<T>): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_REPO_CACHE_TIMEOUT_MS;
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
  try {
    return await usingRepoCache({ ...options, signal }, fn);
  } catch (err) {
    // Stopped by the deadline (git killed, its abort's reason thrown), not by the caller nor for a reason of its own.
    if (deadline.aborted && !options.signal?.aborted && (err === deadline.reason || isSlipwayError(err, 'cancelled'))) {
      const limit = options.timeoutMs === undefined ? '' : ' (the app\'s build_timeout_s)';
      throw new UnavailableError('git', `git was stopped: the clone cache of ${options.app.name} was in use past ${timeoutMs / 1000} s${limit}, waiting for its lock or fetching: the remote is too slow, or the repository too large`, { cause: err });
    }
    throw err;
  }
}

async function usingRepoCache<T>(options: RepoCacheOptions & { signal: AbortSignal }, fn: (cache: RepoCache) => Promise<T>): Promise<T> {
  const repo = classifyRepoUrl(options.app.repo);
  const paths = workPaths(options.workdir, options.app.name);
  const log = options.log ?? (() => {});
  await mkdir(paths.repos, { recursive: true });
  return withRepoLock(paths.lock, async ({ recovered }) => {
    const credentials = options.app.credentials?.ssh_key
      ? { ...options.app.credentials, ssh_key: resolve(options.app.credentials.ssh_key) }
      : options.app.credentials;
    const runnerOptions = { gitDir: paths.repo, repo, credentials, log, signal: options.signal, idleTimeoutMs: options.gitIdleTimeoutMs };
    await ensureBareRepo(paths.repo, log, runnerOptions);
    const git = createGitRunner(runnerOptions);
    await removeGitLocks(paths.repo, log, recovered ? {} : { olderThanMs: LEFT_GIT_LOCK_MS });
    // Metadata of checkouts whose directories are gone (cleaned up, or of a crashed job).
    await git.run(['worktree', 'prune']);

    const localGit = createGitRunner({ ...runnerOptions, repo: undefined, idleTimeoutMs: Math.max(LOCAL_IDLE_TIMEOUT_MS, options.gitIdleTimeoutMs ?? 0) });
    const collectGarbage = async () => {
      await localGit.run(['gc', '--auto', '--quiet'], { action: 'gc' }).catch((err: Error) => log(`warning: git gc --auto failed (${err.message.split('\n', 1)[0]}); the clone cache is left as it is`));
    };
    const hasCommit = async (sha: string) => (await git.probe(['cat-file', '-e', '--end-of-options', `${assertSha(sha)}^{commit}`])) !== null;
    // An ancestor is its own merge base with the descendant. (Not `--is-ancestor`: its "no" is an exit code
    // without output, which the git client does not report as a failure.)
    const isAncestor = async (sha: string, of: string) => (await git.probe(['merge-base', '--end-of-options', assertSha(sha), of]))?.trim() === sha;
    const cache: RepoCache = {
      dir: paths.repo,
      repo,
      git,
      localGit,
      hasCommit,
      async fetchBranches() {
        log(`fetching ${repo.url}`);
        // --progress: a long transfer keeps talking, so the idle timeout only stops a git that is stuck.
        // No automatic gc inside the fetch: a repack is silent, and the idle timeout would kill it with the fetch, at every attempt.
        await git.run(['fetch', '--progress', '--prune', '--no-tags', '--no-recurse-submodules', '--no-auto-gc', '--no-auto-maintenance', '--', repo.url, BRANCHES], { action: 'fetch', stream: true });
      },
      collectGarbage,
      async fetchCommit(sha) {
        assertSha(sha);
        log(`fetching commit ${sha} from ${repo.url}`);
        try {
          await git.run(['fetch', '--progress', '--no-tags', '--no-recurse-submodules', '--no-write-fetch-head', '--no-auto-gc', '--no-auto-maintenance', '--', repo.url, sha], { action: 'fetch', stream: true });
        } catch (err) {
          // "not our ref", "couldn't find remote ref": the remote does not have it (or will not say).
          // Any other failure (a remote that cannot read its own objects, a full disk here) is not the
          // commit's: it stays what git said rather than reading as "not in the repository".
          if (err instanceof Error && NO_SUCH_REF.test(err.message)) return false;
          throw err;
        }
        return hasCommit(sha);
      },
      isAncestor,
      isOnBranch: (sha, branch) => isAncestor(sha, `refs/heads/${assertBranch(branch)}`),
    };
    try {
      return await fn(cache);
    } catch (err) {
      // An object of this cache git cannot read (cut short by a crash, a full disk): the cache would fail every deploy
      // the same way, since it still answers as a repository. Started again (under the lock), the job tried again.
      if (!cacheDamaged(err, repo)) throw err;
      try {
        await rm(paths.repo, { recursive: true, force: true });
      } catch {
        throw err;
      }
      log(`the clone cache ${paths.repo} holds an object git cannot read: removed, to be cloned afresh`);
      throw new UnavailableError('git', `the clone cache of ${options.app.name} was damaged (${err.message.split('\n', 1)[0]}): it was removed, and is cloned afresh when the job is tried again`, { cause: err });
    }
  }, { ...options.lock, signal: options.signal, log });
}

/**
 * Whether `err` is git saying that an object of this cache cannot be read:
 * its own words, never a `remote:` line (the remote's objects are the
 * remote's concern: `git_failed`, as before), and for a fetch from a local
 * path, whose side prints unprefixed, nothing a fetch says. Not when git
 * could not read for this process's reasons (permissions, descriptors).
 */
function cacheDamaged(err: unknown, repo: RepoUrl): err is SlipwayError {
  if (!isSlipwayError(err, 'git_failed') || NOT_THE_CACHE.test(err.message)) return false;
  if (repo.kind === 'file' && /^git fetch failed/.test(err.message)) return false;
  return err.message.split('\n').some((line) => !/^\s*remote:/i.test(line) && isCorruptObjectError(line));
}

/** `not_on_branch` unless `sha` is reachable from the cache's (just fetched) `branch`. */
export async function assertOnBranch(cache: RepoCache, sha: string, branch: string): Promise<void> {
  if (await cache.isOnBranch(sha, branch)) return;
  throw new SlipwayError('not_on_branch', `not_on_branch: commit ${sha} is not on branch ${branch} of ${cache.repo.url}: only commits the configured branch reaches are deployed`, { fault: 'commit' });
}

function assertBranch(branch: string): string {
  if (!isBranchName(branch)) throw new Error(`not a branch name: ${JSON.stringify(branch)}`);
  return branch;
}

/** What a git that never ran fails with (it could not start), as opposed to what git says. */
const GIT_DID_NOT_RUN = /\bspawn (\S+ )?E[A-Z]+\b/;
/** What git says of this process, not of the cache: it may not be read, no file can be opened. */
const NOT_THE_CACHE = /permission denied|too many open files/i;

/** Local git work (a checkout, a repack: both print nothing meanwhile) is stopped after printing nothing for this long. */
export const LOCAL_IDLE_TIMEOUT_MS = 30 * 60_000;

/**
 * Makes `dir` a bare repository for the cache: kept when git says it is
 * one; started again when git, asked, says anything else (none yet, a
 * damaged one). A question git did not answer (the job cancelled, git
 * stopped or unable to start), or an answer about this process rather
 * than the cache (it may not read it, no file can be opened), keeps the
 * cache as it is and fails: a cancel at the wrong moment must not cost the
 * next deploy a whole clone, nor `slipway deploy` run as a user who may
 * not read the worker's delete it.
 */
export async function ensureBareRepo(dir: string, log: (line: string) => void, runnerOptions: Parameters<typeof createGitRunner>[0]): Promise<void> {
  await mkdir(dir, { recursive: true });
  const git = createGitRunner({ ...runnerOptions, repo: undefined });
  const answer = await git.probe(['rev-parse', '--is-bare-repository']).catch((err: unknown) => {
    if (runnerOptions.signal?.aborted || !isSlipwayError(err, 'git_failed') || GIT_DID_NOT_RUN.test(err.message) || NOT_THE_CACHE.test(err.message)) throw err;
    return null;
  });
  if (answer === 'true') return;
  const entries = await readdir(dir);
  if (entries.length > 0) {
    log(`the clone cache ${dir} is damaged; starting it again`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
  }
  await git.run(['init', '--quiet', '--bare'], { action: 'init' });
  // Exactly the committed bytes; gc in the foreground so it never outlives our lock.
  for (const [key, value] of [['core.autocrlf', 'false'], ['gc.autoDetach', 'false'], ['advice.detachedHead', 'false']] as const) {
    await git.run(['config', key, value], { action: 'config' });
  }
}

/** A git lock file this old, found by the holder of the repository's lock, was left by a git that died. */
export const LEFT_GIT_LOCK_MS = 60_000;

/**
 * `*.lock` files a killed git left in the cache: every one after breaking
 * a dead holder's lock; otherwise (`olderThanMs`) those older than that,
 * outside `objects/`: a git killed by the OOM killer under a worker that
 * lived on leaves `refs/heads/<branch>.lock` or `packed-refs.lock`, and
 * every later fetch failed on it ("cannot lock ref") for good. Only the
 * holder of the repository's lock calls it: no git of ours runs there
 * but in `worktrees/` (a build's checkout), which this leaves alone.
 */
export async function removeGitLocks(dir: string, log: (line: string) => void, options: { olderThanMs?: number } = {}): Promise<void> {
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true }).catch(() => [])) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) {
        // objects/: none of git's lock files; worktrees/: the checkouts builds use now, a git of theirs may run there.
        if (options.olderThanMs === undefined || !(at === dir && (entry.name === 'objects' || entry.name === 'worktrees'))) await walk(path);
      } else if (entry.name.endsWith('.lock')) {
        if (options.olderThanMs !== undefined && Date.now() - ((await stat(path).catch(() => null))?.mtimeMs ?? Date.now()) < options.olderThanMs) continue;
        await unlink(path).catch(() => {});
        log(`removed ${path}, left by an interrupted git`);
      }
    }
  };
  await walk(dir);
}

export type RepoKind = 'file' | 'http' | 'ssh' | 'git';

/** A repository address git may be given, with any embedded credentials moved out of it. */
export interface RepoUrl {
  kind: RepoKind;
  /** What git is given: never carries a password. */
  url: string;
  /** http(s) only: `scheme://host[:port]/`, the scope the auth header is limited to. */
  origin?: string;
  /** Credentials found in an http(s) URL (`https://user:token@host/…`), removed from `url`. */
  username?: string;
  password?: string;
}

const SCHEMES: Record<string, RepoKind> = {
  'file:': 'file', 'http:': 'http', 'https:': 'http', 'ssh:': 'ssh', 'git+ssh:': 'ssh', 'ssh+git:': 'ssh', 'git:': 'git',
};
/** `user@host:path` (git's scp-like syntax); host is a name or a bracketed IPv6 address. */
const SCP_LIKE = /^(?:[A-Za-z0-9._-]+@)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?!:)(.+)$/;

/**
 * Classifies `apps.<app>.repo`. Only file, http(s), ssh (URL or scp-like)
 * and git transports; anything git would hand to a remote helper
 * (`ext::sh -c …`, `fd::`), a relative path, a leading `-` or whitespace
 * is refused, so the address cannot become a command or an option.
 */
export function classifyRepoUrl(value: unknown): RepoUrl {
  const refuse = (why: string) => new InvalidInputError(`repository address ${quote(value)} ${why}`, { code: 'invalid_repo_url' });
  if (typeof value !== 'string' || value.length === 0) throw refuse('is empty');
  if (value.length > 2048) throw refuse('is too long');
  if (/[\s\u0000-\u001f\u007f]/.test(value)) throw refuse('contains whitespace or control characters');
  if (value.startsWith('-')) throw refuse('starts with "-"');
  if (value.includes('::')) throw refuse('uses a remote helper (<transport>::<address>), which is not allowed');

  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)?.[1];
  if (scheme !== undefined) {
    const kind = SCHEMES[`${scheme.toLowerCase()}:`];
    if (!kind) throw refuse(`uses the unsupported scheme ${scheme}://`);
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw refuse('is not a valid URL');
    }
    if (kind === 'file') {
      if (url.host !== '' && url.host !== 'localhost') throw refuse('names a host; file:// URLs must be local');
      if (url.pathname === '/' || url.pathname === '') throw refuse('has no path');
      return { kind, url: value };
    }
    if (url.hostname === '') throw refuse('has no host');
    // Only http(s) can take a password from the URL, and we move it out; elsewhere it would sit in argv.
    if (kind !== 'http' && url.password) throw refuse('carries a password; use credentials.ssh_key for ssh');
    if (kind !== 'http') return { kind, url: value };
    const username = url.username ? decodeURIComponent(url.username) : undefined;
    const password = url.password ? decodeURIComponent(url.password) : undefined;
    url.username = '';
    url.password = '';
    return { kind, url: url.toString(), origin: `${url.protocol}//${url.host}/`, ...(username ? { username } : {}), ...(password ? { password } : {}) };
  }
  if (value.startsWith('/')) return { kind: 'file', url: value };
  const scp = SCP_LIKE.exec(value);
  if (scp && !scp[1]!.startsWith('-')) return { kind: 'ssh', url: value };
  throw refuse('is not a file path, file://, http(s)://, ssh://, git:// or user@host:path address');
}

/** Where an app's clone cache, its lock and its build contexts live under `workdir`. */
export interface WorkPaths {
  /** `<workdir>/repos`: one bare clone per app. */
  repos: string;
  /** `<workdir>/repos/<app>`: the app's bare clone cache. */
  repo: string;
  /** `<workdir>/repos/<app>.lock`: serialises every git operation on `repo`. */
  lock: string;
  /** `<workdir>/builds`: checked-out trees, one per job, removed after the build. */
  builds: string;
}

export function workPaths(workdir: string, app: string): WorkPaths {
  assertAppName(app);
  // Absolute, always: git is given these paths from a different working directory.
  const root = resolve(workdir);
  const repos = join(root, 'repos');
  return { repos, repo: join(repos, app), lock: join(repos, `${app}.lock`), builds: join(root, 'builds') };
}
