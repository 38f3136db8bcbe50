import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { lastLines } from '@slipway/core/run-command';
import { scrubSecrets } from '@slipway/core/logger';

/** Stable codes of git failures; `unavailable` ones are retryable ({@link UnavailableError}). */
export type GitFailureCode = 'git_auth_failed' | 'repo_not_found' | 'unavailable' | 'git_failed';

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
  const first = tail.split('\n', 1)[0]?.replace(/^\s*(fatal|error):\s*/i, '') || 'no output';
  return new SlipwayError('git_failed', detail(`git ${context.action} failed: ${first}`));
}
