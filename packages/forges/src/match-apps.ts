import type { AppConfig } from '@slipway/config/types';
import { repoKey, type RepoKey } from './repo-key.js';
import type { RepositoryIdentity } from './repository-identity.js';

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
 * (unchanging) array each time.
 */
export function matchApps<A extends MatchableApp>(apps: readonly A[], identity: RepositoryIdentity, ref?: string): A[] {
  const index = indexOf(apps);
  const found = new Map<A, number>();
  for (const candidate of candidatesOf(identity)) {
    for (const entry of index.get(candidate.path) ?? []) {
      if (entry.host !== null && entry.host !== candidate.host) continue;
      if (ref !== undefined && ref !== `refs/heads/${entry.app.branch}`) continue;
      found.set(entry.app, entry.order);
    }
  }
  return [...found].sort((a, b) => a[1] - b[1]).map(([app]) => app);
}
