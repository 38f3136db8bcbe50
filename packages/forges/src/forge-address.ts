import type { AppConfig, SlipwayConfig } from '@slipway/config/types';

/*
 * The forges Slipway knows, where an app's repository is on them (from the
 * configuration, never from a webhook), and which addresses git may be given.
 */

/** The forges with a receiver endpoint (`POST /hooks/<provider>`). Forgejo and Gogs use `gitea`. */
export type Provider = 'github' | 'gitea' | 'gitlab';

const PROVIDERS: readonly Provider[] = ['github', 'gitea', 'gitlab'];

export function isProvider(value: unknown): value is Provider {
  return typeof value === 'string' && (PROVIDERS as readonly string[]).includes(value);
}

type Forges = SlipwayConfig['forges'];

/**
 * Where an app's repository lives, as the configuration says. A valid
 * signature proves who sent a webhook, not that the hosts it names are ones
 * to talk to: what Slipway clones, where its commit statuses (with the
 * forge's token) go and which host a webhook's repository must be on all
 * come from here, never from the payload.
 */
export interface ConfiguredRepository {
  /** What git clones. */
  cloneUrl: string;
  /** The forge's host name, lower case; null for a repository on this machine (a path, file://). */
  host: string | null;
  /** `https://host[/sub/path]` of the forge's web side, the root its API hangs from; null when unknown. */
  webRoot: string | null;
  /** `owner/name` (GitLab: `group/…/name`) on that forge, as configured; null when unknown. */
  fullName: string | null;
}

/** `repo: owner/name`: matches that repository on any forge's webhook; where it lives comes from `forges`. */
export const OWNER_NAME = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;

/** The suffix each forge's REST API has below its web root. */
const API_PATH: Record<Provider, string> = { github: '/api/v3', gitea: '/api/v1', gitlab: '/api/v4' };
/** Forges with a public home a `owner/name` app may mean when `forges.<provider>.api_url` is not set. */
const PUBLIC_WEB_ROOT: Partial<Record<Provider, string>> = { github: 'https://github.com', gitlab: 'https://gitlab.com' };
/** The host names of those public homes. */
const PUBLIC_HOSTS: Partial<Record<Provider, readonly string[]>> = { github: ['github.com', 'www.github.com'], gitlab: ['gitlab.com'] };

/**
 * The web root of a provider's forge from `forges.<provider>.api_url`
 * (`https://api.github.com` → `https://github.com`, `<root>/api/v3|v1|v4`
 * → `<root>`), else the public forge (github.com, gitlab.com); null for
 * Gitea without an `api_url`, which has no public home.
 */
export function forgeWebRoot(provider: Provider, forges: Forges): string | null {
  const api = forges[provider]?.api_url?.replace(/\/+$/, '');
  if (!api) return PUBLIC_WEB_ROOT[provider] ?? null;
  const url = new URL(api);
  if (provider === 'github' && url.hostname.toLowerCase() === 'api.github.com') return 'https://github.com';
  return api.toLowerCase().endsWith(API_PATH[provider]) ? api.slice(0, -API_PATH[provider].length) : url.origin;
}

/**
 * The app's repository as configured. `provider` says which forge an
 * `owner/name` app's push came from (null: not known, e.g. a deploy from
 * the CLI); `fullName` (a webhook's `owner/name`) only helps split a
 * configured URL into a forge installed under a sub-path and the
 * repository's path on it (`https://host/gitlab/group/app.git`), and is
 * used only when the configured URL ends with it. Null when an
 * `owner/name` app's forge cannot be told from the configuration.
 */
export function configuredRepository(app: Pick<AppConfig, 'repo'>, provider: Provider | null, forges: Forges, fullName?: string): ConfiguredRepository | null {
  const repo = app.repo;
  // The same repository as configured, in the forge's own spelling (forges match names in any case).
  const named = (path: string) => (fullName && path.toLowerCase() === fullName.toLowerCase() ? fullName : path || null);
  if (OWNER_NAME.test(repo)) {
    const webRoot = provider ? forgeWebRoot(provider, forges) : null;
    if (!webRoot) return null;
    return { cloneUrl: `${webRoot}/${repo}.git`, host: new URL(webRoot).hostname.toLowerCase(), webRoot, fullName: named(repo) };
  }
  const scp = /^(?:[^@/:]+@)?([^@/:[\]]+|\[[^\]]+\]):(?!\/\/)\/?(.+)$/.exec(repo);
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(repo) && scp) {
    return { cloneUrl: repo, host: scp[1]!.replace(/^\[|\]$/g, '').toLowerCase(), webRoot: `https://${scp[1]}`, fullName: named(trimRepoPath(scp[2]!)) };
  }
  let url: URL;
  try {
    url = new URL(repo);
  } catch {
    return { cloneUrl: repo, host: null, webRoot: null, fullName: null };
  }
  if (url.protocol === 'file:' || url.hostname === '') return { cloneUrl: repo, host: null, webRoot: null, fullName: null };
  const path = trimRepoPath(url.pathname);
  const web = url.protocol === 'http:' || url.protocol === 'https:' ? `${url.protocol}//${url.host}` : `https://${url.hostname}`;
  if (fullName && path.toLowerCase().endsWith(`/${fullName.toLowerCase()}`)) {
    const prefix = path.slice(0, path.length - fullName.length - 1);
    // The payload's name splits the path only where the configuration does not already say where the forge is:
    // with forges.<provider>.api_url set, a signed name must not pick another project there for the token's statuses.
    const configuredRoot = provider && forges[provider]?.api_url ? forgeWebRoot(provider, forges) : null;
    if (configuredRoot === null || configuredRoot.toLowerCase() === `${web}/${prefix}`.toLowerCase()) {
      return { cloneUrl: repo, host: url.hostname.toLowerCase(), webRoot: `${web}/${prefix}`, fullName };
    }
  }
  return { cloneUrl: repo, host: url.hostname.toLowerCase(), webRoot: web, fullName: named(path) };
}

/**
 * The REST API root for commit statuses: `forges.<provider>.api_url`, else
 * derived from the configured web root. Null when it would be derived for
 * a host that is another forge's (github.com, gitlab.com, or the host of
 * another provider's `api_url`): the provider comes from the endpoint a
 * webhook was sent to, and this provider's token must not go there.
 */
export function forgeApiBase(provider: Provider, webRoot: string | null, forges: Forges): string | null {
  const configured = forges[provider]?.api_url;
  if (configured) return configured.replace(/\/+$/, '');
  if (!webRoot) return null;
  if (provider === 'github' && /^https?:\/\/(www\.)?github\.com$/i.test(webRoot)) return 'https://api.github.com';
  const host = hostOf(webRoot);
  // Each other provider's public home, whether or not its api_url points elsewhere, and its configured host.
  const othersHosts = PROVIDERS.filter((other) => other !== provider).flatMap((other) => {
    const root = forgeWebRoot(other, forges);
    return [...(PUBLIC_HOSTS[other] ?? []), ...(root ? [hostOf(root)] : [])];
  });
  if (host === null || othersHosts.includes(host)) return null;
  return `${webRoot}${API_PATH[provider]}`;
}

/** The host of an address a URL parser reads as http(s) (`https:host/x` too), or null for anything else. */
export function webHostOf(address: string): string | null {
  if (!URL.canParse(address)) return null;
  const url = new URL(address);
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname ? url.hostname.replace(/^\[|\]$/g, '').toLowerCase() : null;
}

/** The host of an http(s), ssh or git URL, or of a scp-like `user@host:path`; null for anything else. */
export function hostOf(address: string): string | null {
  // canParse first: a scp-like address is no URL, and the TypeError new URL would throw for it
  // (its stack captured) cost more than the rest of a webhook's host checks together.
  if (URL.canParse(address)) {
    const url = new URL(address);
    if (url.hostname && url.protocol !== 'file:') return url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  }
  const scp = /^(?:[^@/:]+@)?([^@/:[\]]+|\[[^\]]+\]):(?!\/\/)/.exec(address);
  return scp ? scp[1]!.replace(/^\[|\]$/g, '').toLowerCase() : null;
}

function trimRepoPath(path: string): string {
  return path.replace(/^\/+/, '').replace(/\/+$/, '').replace(/\.git$/i, '');
}

const SCP = /^[A-Za-z0-9._-]+@[A-Za-z0-9][A-Za-z0-9.-]*:[A-Za-z0-9._~][A-Za-z0-9._~/-]*$/;

/**
 * A repository on this machine as a payload may name it (an absolute path,
 * or a `file://` URL without a host): accepted only for an app configured
 * with that same path (see inspectWebhook), and never handed to git, as no
 * payload's address is.
 */
export function isLocalCloneUrl(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048 || /[\s\0-\x1f\x7f\\]/.test(value)) return false;
  const path = /^(?:file:\/\/(?:localhost)?)?(\/[^?#]+)$/i.exec(value)?.[1];
  return path !== undefined && !path.split('/').some((s) => s === '.' || s === '..');
}

/**
 * A clone URL a worker may hand to git as-is: http(s), ssh or git, or
 * scp-like `user@host:path`; never option-like (`--upload-pack=…`), never a
 * local path, file:// or ext:: transport, no whitespace or control
 * characters, no password, no query, no `.`/`..` segment.
 */
export function isSafeCloneUrl(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048) return false;
  if (value.startsWith('-') || /[\s\0-\x1f\x7f\\]/.test(value)) return false;
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    return false;
  }
  if (/[\s\0-\x1f\x7f\\]/.test(decoded) || decoded.split('/').some((s) => s === '..' || s === '.')) return false;
  if (SCP.test(value)) return true;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (!['https:', 'http:', 'ssh:', 'git:'].includes(url.protocol)) return false;
  if (!/^[A-Za-z0-9[][A-Za-z0-9.:[\]-]*$/.test(url.hostname) || url.password !== '') return false;
  if ((url.protocol === 'https:' || url.protocol === 'http:' || url.protocol === 'git:') && url.username !== '') return false;
  return url.search === '' && url.hash === '' && url.pathname.length > 1 && !value.includes('?') && !value.includes('#');
}
