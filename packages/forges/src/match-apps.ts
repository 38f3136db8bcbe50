import type { AppConfig } from '@slipway/config/types';
import type { RepositoryIdentity } from './webhook-body.js';

/*
 * Which apps a webhook is for: the repository it names and the apps'
 * configured `repo`, each reduced to a key (host and path) so that the
 * clone, SSH and web URLs and `owner/name` of one repository all match.
 */

/**
 * A repository reference reduced to what identifies it: lower-case host and
 * path, without scheme, user, port, trailing slash or `.git`. `host` is null
 * for a bare `owner/name`, which matches that path on any host, and
 * {@link LOCAL_HOST} for a repository on this machine (an absolute path or
 * a `file://` URL), which matches only the same path.
 */
export interface RepoKey {
  host: string | null;
  path: string;
}

const URL_FORM = /^(?:https?|ssh|git|git\+ssh):\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::\d*)?\/(.+)$/;
/** `git@host:owner/name`, and the rarer `host:owner/name`. */
const SCP_FORM = /^(?:[^@/:]+@)?([^@/:]+):(?!\/\/)\/?(.+)$/;
const BARE_FORM = /^[a-z0-9._-]+(?:\/[a-z0-9._-]+)+$/;
/** `/srv/git/hello.git`, `file:///srv/git/hello.git`, `file://localhost/srv/git/hello.git`. */
const LOCAL_FORM = /^(?:file:\/\/(?:localhost)?)?\/+(.+)$/;
/** The host of a repository on this machine: no host name has it. */
export const LOCAL_HOST = '/';
const SEGMENT = /^[a-z0-9._~-]+$/;

/**
 * Normalises `https://host/owner/name(.git)`, `ssh://git@host[:port]/owner/name`,
 * `git@host:owner/name`, bare `owner/name` and local paths (absolute, or
 * `file://`). Null for anything else (relative paths, garbage): such
 * references never match a webhook.
 */
export function repoKey(reference: string): RepoKey | null {
  const text = reference.trim().toLowerCase();
  if (text.length === 0 || text.length > 2048) return null;
  let host: string | null = null;
  let rawPath: string;
  const url = URL_FORM.exec(text);
  const local = url ? null : LOCAL_FORM.exec(text);
  const scp = url || local ? null : SCP_FORM.exec(text);
  if (local) {
    host = LOCAL_HOST;
    rawPath = local[1]!;
  } else if (url) {
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
  if (host !== null && host !== LOCAL_HOST && !/^[a-z0-9.[\]:-]+$/.test(host)) return null;
  return { host, path };
}

/** The part of an app's config matching needs. */
export type MatchableApp = Pick<AppConfig, 'name' | 'repo' | 'branch'>;

/**
 * App repo keys, computed once per app object (config is not mutated): a
 * receiver matches every request against every app.
 */
const appKeys = new WeakMap<object, RepoKey | null>();

function keyOf(app: MatchableApp): RepoKey | null {
  let key = appKeys.get(app);
  if (key === undefined) {
    key = repoKey(app.repo);
    appKeys.set(app, key);
  }
  return key;
}

/** Whether `app`'s repository is on this machine (see {@link LOCAL_HOST}). */
export function isLocalRepo(app: MatchableApp): boolean {
  return keyOf(app)?.host === LOCAL_HOST;
}

/** The keys a payload's repository goes by, once per identity (matching runs twice per webhook). */
const identityKeys = new WeakMap<RepositoryIdentity, RepoKey[]>();

function candidatesOf(identity: RepositoryIdentity): RepoKey[] {
  let candidates = identityKeys.get(identity);
  if (candidates === undefined) {
    candidates = identity.urls.map(repoKey).filter((k): k is RepoKey => k !== null);
    if (identity.fullName !== null) {
      const bare = repoKey(identity.fullName);
      // A full name is only ever a path: it must not pass for a URL with a host.
      if (bare && bare.host === null) candidates.push(bare);
    }
    identityKeys.set(identity, candidates);
  }
  return candidates;
}

/** Apps by repository path, built once per apps list: matching is a lookup, not a scan of every app. */
const indexes = new WeakMap<object, Map<string, Array<{ app: MatchableApp; host: string | null; order: number }>>>();

function indexOf<A extends MatchableApp>(apps: readonly A[]): Map<string, Array<{ app: A; host: string | null; order: number }>> {
  let index = indexes.get(apps) as Map<string, Array<{ app: A; host: string | null; order: number }>> | undefined;
  if (index === undefined) {
    index = new Map();
    apps.forEach((app, order) => {
      const want = keyOf(app);
      if (!want) return;
      const entries = index!.get(want.path) ?? [];
      entries.push({ app, host: want.host, order });
      index!.set(want.path, entries);
    });
    indexes.set(apps, index);
  }
  return index;
}

/**
 * Apps whose `repo` is this repository (by clone, SSH or web URL, or
 * `owner/name`: no `.git`, any case) and, when `ref` is given, whose branch
 * it is (`refs/heads/<branch>`). Config order is kept; several apps may
 * share a repository. `apps` is indexed on first use: pass the same
 * (unchanging) array each time. With `anyHost`, the path alone matches
 * (`acme/hello` on any forge): for telling a repository named on another
 * host from one no app is configured for.
 */
export function matchApps<A extends MatchableApp>(apps: readonly A[], identity: RepositoryIdentity, ref?: string, options: { anyHost?: boolean } = {}): A[] {
  const index = indexOf(apps);
  const found = new Map<A, number>();
  for (const candidate of candidatesOf(identity)) {
    for (const entry of index.get(candidate.path) ?? []) {
      if (!options.anyHost && entry.host !== null && entry.host !== candidate.host) continue;
      if (ref !== undefined && ref !== `refs/heads/${entry.app.branch}`) continue;
      found.set(entry.app, entry.order);
    }
  }
  return [...found].sort((a, b) => a[1] - b[1]).map(([app]) => app);
}
