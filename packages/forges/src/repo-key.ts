/**
 * A repository reference reduced to what identifies it: lower-case host and
 * path, without scheme, user, port, trailing slash or `.git`. `host` is null
 * for a bare `owner/name`, which matches that path on any host.
 */
export interface RepoKey {
  host: string | null;
  path: string;
}

const URL_FORM = /^(?:https?|ssh|git|git\+ssh):\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::\d*)?\/(.+)$/;
/** `git@host:owner/name`, and the rarer `host:owner/name`. */
const SCP_FORM = /^(?:[^@/:]+@)?([^@/:]+):(?!\/\/)\/?(.+)$/;
const BARE_FORM = /^[a-z0-9._-]+(?:\/[a-z0-9._-]+)+$/;
const SEGMENT = /^[a-z0-9._~-]+$/;

/**
 * Normalises `https://host/owner/name(.git)`, `ssh://git@host[:port]/owner/name`,
 * `git@host:owner/name` and bare `owner/name`. Null for anything else (local
 * paths, file:// URLs, garbage): such references never match a webhook.
 */
export function repoKey(reference: string): RepoKey | null {
  const text = reference.trim().toLowerCase();
  if (text.length === 0 || text.length > 2048) return null;
  let host: string | null = null;
  let rawPath: string;
  const url = URL_FORM.exec(text);
  const scp = url ? null : SCP_FORM.exec(text);
  if (url) {
    host = url[1]!;
    rawPath = url[2]!;
  } else if (scp) {
    host = scp[1]!;
    rawPath = scp[2]!;
  } else if (BARE_FORM.test(text)) {
    rawPath = text;
  } else {
    return null;
  }
  const path = rawPath.replace(/\/+$/, '').replace(/\.git$/, '').replace(/\/+$/, '');
  const segments = path.split('/');
  if (segments.length < 2 || segments.some((s) => !SEGMENT.test(s) || s === '.' || s === '..')) return null;
  if (host !== null && !/^[a-z0-9.[\]:-]+$/.test(host)) return null;
  return { host, path };
}
