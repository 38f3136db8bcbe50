import type { StatusTarget } from './commit-status.js';

/**
 * The API root of the forge a push came from: the configured `api_url`
 * when there is one, else derived from the repository's web address (its
 * clone URL when the webhook had none): `https://api.github.com` for
 * github.com and `<forge>/api/v3` for GitHub Enterprise, `<forge>/api/v1`
 * for Gitea, Forgejo and Gogs, `<forge>/api/v4` for GitLab. `<forge>` keeps
 * a sub-path install (`https://host/gitlab`). Null when neither address is
 * an http(s) URL (an SSH clone URL and no web URL).
 */
export function forgeApiBase(target: Pick<StatusTarget, 'provider' | 'fullName' | 'htmlUrl' | 'cloneUrl'>, configured?: string): string | null {
  if (configured) return configured.replace(/\/+$/, '');
  const root = forgeRoot(target.htmlUrl, target.fullName) ?? forgeRoot(target.cloneUrl, target.fullName);
  if (!root) return null;
  switch (target.provider) {
    case 'github':
      return /^https?:\/\/(www\.)?github\.com$/i.test(root) ? 'https://api.github.com' : `${root}/api/v3`;
    case 'gitea':
      return `${root}/api/v1`;
    case 'gitlab':
      return `${root}/api/v4`;
  }
}

/** `https://host[/sub/path]` of a repository address: the path before `owner/name` (and `.git`). */
function forgeRoot(address: string | null, fullName: string): string | null {
  if (!address) return null;
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return null;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  const path = url.pathname.replace(/\/+$/, '').replace(/\.git$/i, '');
  const suffix = `/${fullName}`.toLowerCase();
  const prefix = path.toLowerCase().endsWith(suffix) ? path.slice(0, path.length - suffix.length) : '';
  return `${url.protocol}//${url.host}${prefix}`;
}
