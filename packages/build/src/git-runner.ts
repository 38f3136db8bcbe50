import { GitError, GitPluginError, simpleGit, type SimpleGit } from 'simple-git';
import { scrubSecrets } from '@slipway/core/logger';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { gitEnv, type GitCredentials } from './git-env.js';
import { gitFailure } from './git-failure.js';
import type { RepoUrl } from './repo-url.js';

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
  /** Like `run`, but a failure is `null`: for questions such as "is this commit here?". */
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

  const client = (stream: boolean): SimpleGit => {
    const git = simpleGit({
      baseDir: options.gitDir,
      binary: 'git',
      maxConcurrentProcesses: 1,
      trimmed: true,
      config: [],
      timeout: { block: idleTimeoutMs },
      allowEnvironment: auth.allowEnvironment,
      unsafe: auth.unsafe,
      ...(options.signal ? { abort: options.signal } : {}),
    }).env(auth.env);
    const log = options.log;
    if (stream && log) {
      git.outputHandler((_command, _stdout, stderr) => {
        let partial = '';
        stderr.on('data', (chunk: Buffer) => {
          const lines = (partial + chunk.toString('utf8')).split(/\r?\n|\r/);
          partial = lines.pop() ?? '';
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
    try {
      return await client(runOptions.stream ?? false).raw([...args]);
    } catch (err) {
      throw translate(err, action);
    }
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
        if (err instanceof GitPluginError && err.plugin === 'abort') throw translate(err, args[0] ?? 'git');
        return null;
      }
    },
    secrets,
  };
}
