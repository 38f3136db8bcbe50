import { InvalidInputError } from '@slipway/core/slipway-error';
import { quote } from '@slipway/core/validate';

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
