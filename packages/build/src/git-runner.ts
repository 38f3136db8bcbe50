import { StringDecoder } from 'node:string_decoder';
import { GitError, GitPluginError, simpleGit, type SimpleGit } from 'simple-git';
import { scrubSecrets } from '@slipway/core/logger';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { lastLines } from '@slipway/core/run-command';
import type { RepoUrl, RepoKind } from './repo-cache.js';

/** git is stopped when it has printed nothing for this long (a hung server, a stuck proxy). */
export const DEFAULT_GIT_IDLE_TIMEOUT_MS = 120_000;

/** `Receiving objects:  42% (5/12)`: progress meters, of which only the final `done.` line is logged. */
const PROGRESS = /^(remote: )?[A-Za-z ]+:\s+\d+% \(\d+\/\d+\)/;
const worthLogging = (line: string) => line.trim() !== '' && (!PROGRESS.test(line) || /done\.?\s*$/.test(line));

export interface GitRunnerOptions {
  /** The bare repository; must exist (it is also the working directory). */
  gitDir: string;
  /** The remote; omit for local-only work. */
  repo?: RepoUrl;
  credentials?: GitCredentials;
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** Default {@link DEFAULT_GIT_IDLE_TIMEOUT_MS}. */
  idleTimeoutMs?: number;
}

export interface GitRunOptions {
  /** Names the operation in errors. Default: the first argument. */
  action?: string;
  /** Send git's stderr (fetch summaries, checkout notes) to `log`, line by line; progress meters only when done. */
  stream?: boolean;
}

export interface GitRunner {
  /** Runs git with these arguments (argv, never a shell) and returns its trimmed stdout. */
  run(args: readonly string[], options?: GitRunOptions): Promise<string>;
  /**
   * Like `run`, for questions such as "is this commit here?": git saying
   * there is no such object or revision is `null`; any other failure throws
   * as `run` would.
   */
  probe(args: readonly string[]): Promise<string | null>;
  readonly secrets: readonly string[];
}

/**
 * simple-git, configured deliberately: its environment guard stays on and
 * admits only the variables {@link gitEnv} sets; of its unsafe-operation
 * checks only the two our own variables need are relaxed (env-count config
 * for the auth header, the ssh command); abbreviated options stay refused;
 * one process at a time; the job's AbortSignal kills git; a silent git is
 * stopped.
 */
export function createGitRunner(options: GitRunnerOptions): GitRunner {
  const auth = gitEnv({ base: process.env, gitDir: options.gitDir, repo: options.repo, credentials: options.credentials });
  const secrets = auth.secrets;
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_GIT_IDLE_TIMEOUT_MS;
  const scrub = (text: string) => scrubSecrets(text, secrets);

  /** `overran`: set when git's output ran on past MAX_GIT_OUTPUT_LINE in one line, and git was stopped for it. */
  const client = (stream: boolean, state: { overran: boolean } = { overran: false }): SimpleGit => {
    const git = simpleGit({
      baseDir: options.gitDir,
      binary: 'git',
      maxConcurrentProcesses: 1,
      trimmed: true,
      config: [],
      timeout: { block: idleTimeoutMs },
      allowEnvironment: auth.allowEnvironment,
      unsafe: auth.unsafe,
      errors: gitErrors,
      ...(options.signal ? { abort: options.signal } : {}),
    }).env(auth.env);
    const log = options.log;
    if (stream && log) {
      git.outputHandler((_command, _stdout, stderr) => {
        let partial = '';
        let skipping = 0;
        // A character split between two chunks is decoded whole (accented words in a remote's messages).
        const decoder = new StringDecoder('utf8');
        stderr.on('data', (chunk: Buffer) => {
          let text = decoder.write(chunk);
          if (skipping > 0) {
            const end = text.search(/\r?\n|\r/);
            if (end < 0) {
              // simple-git keeps every byte git prints until it exits: a line without end is stopped, not read for ever.
              skipping += text.length;
              if (skipping > MAX_GIT_OUTPUT_LINE && !state.overran) {
                state.overran = true;
                (stderr as unknown as { destroy(): void }).destroy();
              }
              return;
            }
            skipping = 0;
            text = text.slice(end);
          }
          const lines = (partial + text).split(/\r?\n|\r/);
          partial = lines.pop() ?? '';
          // A line that never ends (a broken server's `remote:` output) is not held whole: its start is logged, scrubbed
          // while a secret that begins in it still ends inside it, and the rest dropped up to its end.
          if (partial.length > 2 * MAX_GIT_LINE) {
            lines.push(`${scrub(partial).slice(0, MAX_GIT_LINE)} [line cut]`);
            skipping = partial.length;
            partial = '';
          }
          for (const line of lines) if (worthLogging(line)) log(scrub(line.trimEnd()));
        });
        stderr.on('end', () => {
          if (worthLogging(partial)) log(scrub(partial.trimEnd()));
        });
      });
    }
    return git;
  };

  const run = async (args: readonly string[], runOptions: GitRunOptions = {}): Promise<string> => {
    const action = runOptions.action ?? args[0] ?? 'git';
    const state = { overran: false };
    const overran = () => new SlipwayError('git_failed', `git ${action} printed a line of more than ${MAX_GIT_OUTPUT_LINE / 1024 / 1024} MB without ending it${options.repo ? ` (${scrub(options.repo.url)})` : ''}, and was stopped`);
    let out: string;
    try {
      out = await client(runOptions.stream ?? false, state).raw([...args]);
    } catch (err) {
      throw state.overran ? overran() : translate(err, action);
    }
    if (state.overran) throw overran();
    return out;
  };

  const translate = (err: unknown, action: string): Error => {
    if (err instanceof GitPluginError && err.plugin === 'abort') {
      const reason: unknown = options.signal?.reason;
      return reason instanceof Error ? reason : new SlipwayError('cancelled', `git ${action} cancelled`);
    }
    if (err instanceof GitPluginError && err.plugin === 'timeout') {
      return new UnavailableError('git', `git ${action} printed nothing for ${idleTimeoutMs} ms and was stopped${options.repo ? ` (${scrub(options.repo.url)})` : ''}`);
    }
    if (err instanceof GitPluginError) {
      // The safety guard refused a command: a bug here, never a user's fault.
      return new SlipwayError('git_failed', `git ${action} refused by simple-git's ${err.plugin ?? 'safety'} check: ${scrub(err.message)}`);
    }
    const text = err instanceof GitError || err instanceof Error ? err.message : String(err);
    return gitFailure(text, { action, url: options.repo?.url, secrets });
  };

  return {
    run,
    async probe(args) {
      try {
        return await client(false).raw([...args]);
      } catch (err) {
        // "No such object or revision" is an answer; anything else (a damaged or locked clone, git not starting) is a
        // failure, and must not read as a commit that does not exist or is not on its branch.
        const said = (err as Error).message ?? '';
        if (!(err instanceof GitPluginError) && NO_SUCH_OBJECT.test(said) && !isCorruptObjectError(said)) return null;
        throw translate(err, args[0] ?? 'git');
      }
    },
    secrets,
  };
}

/**
 * simple-git's error detection, with one addition: a git killed by a
 * signal (no exit code: the OOM killer, a stop that signals the worker's
 * whole group) failed, whatever it printed. simple-git's own takes it for
 * success, and a half-made worktree, or a fetch that never updated the
 * branch the commit is checked against, would be used as if whole.
 * Otherwise as simple-git does: a non-zero exit that printed to stderr
 * failed (one that printed nothing is an answer: `merge-base` of unrelated
 * histories).
 */
function gitErrors(error: Buffer | Error | undefined, result: { exitCode: number | null; stdOut: Buffer[]; stdErr: Buffer[] }): Buffer | Error | undefined {
  if (error) return error;
  if (result.exitCode === null) {
    return Buffer.concat([...result.stdErr, Buffer.from('\nfatal: git was killed by a signal before it finished (out of memory, or stopped)')]);
  }
  return result.exitCode && result.stdErr.length ? Buffer.concat([...result.stdOut, ...result.stdErr]) : undefined;
}

/** The longest line of git's output kept for the log. */
const MAX_GIT_LINE = 16 * 1024;
/** A line of git's output this long, still without its end, stops git. */
const MAX_GIT_OUTPUT_LINE = 4 * 1024 * 1024;

/** Credentials as `apps.<app>.credentials` holds them. */
export interface GitCredentials {
  username?: string;
  password?: string;
  /** Absolute path of a private key for ssh transports. */
  ssh_key?: string;
}

export interface GitEnvOptions {
  /** The ambient environment (the caller passes `process.env`). */
  base: Readonly<Record<string, string | undefined>>;
  /** The bare repository every command works on; no discovery of parent repositories. */
  gitDir: string;
  /** The remote, for commands that talk to it; omitted for local-only commands. */
  repo?: RepoUrl;
  credentials?: GitCredentials;
}

/** What simple-git needs to run git with credentials that never reach argv, URLs or files. */
export interface GitEnv {
  env: Record<string, string>;
  /** The guarded (`GIT_*`) variables we set on purpose: simple-git's `allowEnvironment`. */
  allowEnvironment: string[];
  /** The simple-git safety checks our own variables need, and nothing else. */
  unsafe: { allowUnsafeConfigEnvCount?: true; allowUnsafeSshCommand?: true; allowUnsafeConfigPaths: true };
  /** Values to scrub from anything git prints. */
  secrets: string[];
}

/** Username sent with a password-only credential (an access token): GitHub's convention, accepted by Gitea and GitLab. */
export const DEFAULT_TOKEN_USERNAME = 'x-access-token';

/** An ssh server that does not answer within this long is reported unreachable. */
export const SSH_CONNECT_TIMEOUT_S = 30;

/** Non-`GIT_` variables simple-git treats as able to run programs (editor, pager, askpass). */
const GUARDED = new Set(['editor', 'visual', 'pager', 'prefix', 'ssh_askpass']);

const PROTOCOLS: Record<RepoKind, string> = { file: 'file', http: 'http:https', ssh: 'ssh', git: 'git' };

/**
 * Builds the environment git runs in. Pure.
 *
 * - Ambient `GIT_*` and program-running variables are dropped: the operator's
 *   shell must not redirect our repository, ssh command or askpass.
 * - `GIT_DIR` pins the repository (no walking up into a parent checkout).
 * - The system's and the user's git config are not read
 *   (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`).
 * - `GIT_TERMINAL_PROMPT=0` and ssh `BatchMode`: a wrong credential fails
 *   instead of waiting for a keyboard.
 * - `GIT_ALLOW_PROTOCOL` admits only the repository's own transport.
 * - http(s) credentials become an `Authorization` header scoped to the
 *   repository's origin (`http.<origin>.extraHeader`), passed through
 *   `GIT_CONFIG_COUNT/KEY_n/VALUE_n`: not in argv, not in a URL, not in a
 *   config file, and never handed to a credential helper that might store it.
 * - An ssh key becomes `GIT_SSH_COMMAND` (git runs it through `sh`, so every
 *   word is single-quoted).
 */
export function gitEnv(options: GitEnvOptions): GitEnv {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(options.base)) {
    const lower = key.toLowerCase();
    if (value === undefined || lower.startsWith('git_') || GUARDED.has(lower)) continue;
    env[key] = value;
  }
  // Stable, English messages: errors are classified by their text.
  env.LC_ALL = 'C';
  // Only the repository's own config and ours: a `url.<x>.insteadOf` in the worker user's ~/.gitconfig (or the
  // system's) would send the fetch, and the branch check, elsewhere; its hooksPath, credential helpers and filters
  // would run on our fetches and checkouts.
  const ours: Record<string, string> = { GIT_DIR: options.gitDir, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
  // GIT_CONFIG_GLOBAL names a config file, which simple-git allows only when asked.
  const unsafe: GitEnv['unsafe'] = { allowUnsafeConfigPaths: true };
  const secrets: string[] = [];
  const repo = options.repo;
  if (repo) {
    ours.GIT_ALLOW_PROTOCOL = PROTOCOLS[repo.kind];
    const header = repo.kind === 'http' ? authorizationHeader(repo, options.credentials) : null;
    if (header && repo.origin) {
      ours.GIT_CONFIG_COUNT = '1';
      ours.GIT_CONFIG_KEY_0 = `http.${repo.origin}.extraHeader`;
      ours.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${header.token}`;
      unsafe.allowUnsafeConfigEnvCount = true;
      secrets.push(header.password, header.token);
    }
    if (repo.kind === 'ssh') {
      const key = options.credentials?.ssh_key;
      const argv = ['ssh', ...(key ? ['-i', key, '-o', 'IdentitiesOnly=yes'] : []), '-o', 'BatchMode=yes', '-o', `ConnectTimeout=${SSH_CONNECT_TIMEOUT_S}`];
      ours.GIT_SSH_COMMAND = argv.map(shellQuote).join(' ');
      ours.GIT_SSH_VARIANT = 'ssh';
      unsafe.allowUnsafeSshCommand = true;
    }
  }
  return { env: { ...env, ...ours }, allowEnvironment: Object.keys(ours), unsafe, secrets };
}

function authorizationHeader(repo: RepoUrl, credentials: GitCredentials | undefined): { token: string; password: string } | null {
  const password = credentials?.password ?? repo.password;
  if (!password) return null;
  const username = credentials?.username ?? repo.username ?? DEFAULT_TOKEN_USERNAME;
  return { token: Buffer.from(`${username}:${password}`, 'utf8').toString('base64'), password };
}

/**
 * One word for `sh`: bare when plainly safe, else single-quoted. Only for
 * the one place git insists on a shell string (`GIT_SSH_COMMAND`).
 */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./=:@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Stable codes of git failures; `unavailable` ones are retryable ({@link UnavailableError}). */
export type GitFailureCode = 'git_auth_failed' | 'repo_not_found' | 'unavailable' | 'git_failed';

/** What git says when a probed object or revision does not exist (its exit-1 "no" prints nothing, which is not a failure). */
const NO_SUCH_OBJECT = /not a valid (object|commit) name|could not get object info|bad object|bad revision|unknown revision|needed a single revision/i;
/**
 * What git adds when an object is there but cannot be read (a pack or
 * loose object cut short by a crash or a full disk): the clone cache's
 * fault, not an answer that the commit is missing or off its branch.
 */
const CORRUPT = /is corrupt|corrupt (loose )?object|inflate: |unable to unpack|unable to parse .* header|header for \S+ too long|object file \S+ is empty|packfile .* cannot be accessed|garbage at end of loose object/i;

/** Whether git's words say an object is there but cannot be read (see CORRUPT). */
export const isCorruptObjectError = (message: string) => CORRUPT.test(message);

const AUTH = [
  /authentication failed/i,
  /could not read (username|password)/i,
  /terminal prompts disabled/i,
  /HTTP Basic: Access denied/i,
  /requested URL returned error: 40[13]\b/i,
  /permission denied \((publickey|password|keyboard-interactive)/i,
  /host key verification failed/i,
  /(invalid|bad) (credentials|username or password)/i,
  /unprotected private key file|load key .*: (bad permissions|invalid format)/i,
];
const NOT_FOUND = [
  /does not appear to be a git repository/i,
  /repository '.*' not found|repository not found/i,
  /requested URL returned error: 404\b/i,
];
const UNREACHABLE = [
  /could not resolve (host|hostname)|temporary failure in name resolution|name or service not known|no address associated with hostname/i,
  /failed to connect|couldn't connect to server|connection refused|connection timed out|connection reset|network is unreachable|no route to host|operation timed out/i,
  /requested URL returned error: (5\d\d|429)\b/i,
  /remote end hung up unexpectedly|early EOF|RPC failed|unexpected disconnect|ssh: connect to host/i,
  /block timeout reached/i,
];
/** This machine, not the repository: a full disk or no memory left. Retried like a network failure. */
const HOST = [/no space left on device|disk quota exceeded|cannot allocate memory|out of memory|killed by a signal/i];

export interface GitFailureContext {
  /** What was being done, for the first line: `fetch`, `worktree add`, … */
  action: string;
  /** The repository's address as shown to people (no credentials). */
  url?: string;
  /** Known secret values to scrub (passwords, tokens). */
  secrets?: readonly string[];
}

/**
 * Turns git's output into a typed error: the one place git's strings are
 * read. Pure. The message is scrubbed of URL credentials and known secrets;
 * its first line says what failed and why, the rest is git's own output.
 */
export function gitFailure(output: string, context: GitFailureContext): SlipwayError {
  const text = scrubSecrets(output, context.secrets ?? []);
  const tail = lastLines(text, 15);
  const where = context.url ? ` ${scrubSecrets(context.url, context.secrets ?? [])}` : '';
  const reason = (patterns: RegExp[]) => {
    for (const line of text.split('\n')) {
      if (patterns.some((p) => p.test(line))) return line.replace(/^\s*(fatal|error|remote):\s*/i, '').trim();
    }
    return null;
  };
  const detail = (first: string) => (tail && tail !== first ? `${first}\n${tail}` : first);
  const auth = reason(AUTH);
  if (auth) return new SlipwayError('git_auth_failed', detail(`authentication to${where} failed: ${auth}`));
  const missing = reason(NOT_FOUND);
  if (missing) return new SlipwayError('repo_not_found', detail(`repository${where} not found: ${missing}`));
  const unreachable = reason(UNREACHABLE);
  if (unreachable) return new UnavailableError('git', detail(`repository${where} is unreachable: ${unreachable}`));
  const host = reason(HOST);
  if (host) return new UnavailableError('git', detail(`git ${context.action} failed on this host: ${host}`));
  // The line that says what went wrong, not the first (a fetch's "remote: Enumerating objects" comes before it).
  const said = tail.split('\n').find((line) => /^\s*(fatal|error):/i.test(line)) ?? tail.split('\n', 1)[0];
  const first = said?.replace(/^\s*(fatal|error):\s*/i, '') || 'no output';
  return new SlipwayError('git_failed', detail(`git ${context.action} failed: ${first}`));
}
