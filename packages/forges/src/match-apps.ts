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

/**
 * Apps whose `repo` is this repository (by clone, SSH or web URL, or
 * `owner/name`: no `.git`, any case) and, when `ref` is given, whose branch
 * it is (`refs/heads/<branch>`). Config order is kept; several apps may
 * share a repository.
 */
export function matchApps<A extends MatchableApp>(apps: Iterable<A>, identity: RepositoryIdentity, ref?: string): A[] {
  const candidates = candidatesOf(identity);
  const matched: A[] = [];
  for (const app of apps) {
    const want = keyOf(app);
    if (!want) continue;
    const sameRepo = candidates.some((c) => c.path === want.path && (want.host === null || c.host === want.host));
    if (sameRepo && (ref === undefined || ref === `refs/heads/${app.branch}`)) matched.push(app);
  }
  return matched;
}
