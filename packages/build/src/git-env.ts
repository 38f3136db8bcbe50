import type { RepoKind, RepoUrl } from './repo-url.js';
import { shellQuote } from './shell-quote.js';

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
  unsafe: { allowUnsafeConfigEnvCount?: true; allowUnsafeSshCommand?: true };
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
  const ours: Record<string, string> = { GIT_DIR: options.gitDir, GIT_TERMINAL_PROMPT: '0' };
  const unsafe: GitEnv['unsafe'] = {};
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
