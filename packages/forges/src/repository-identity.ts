import type { Provider } from './provider.js';

/**
 * What a payload says its repository is: all that is read from a body
 * before its signature is checked, to find the app (and so the secret).
 */
export interface RepositoryIdentity {
  /** `owner/name` (GitLab: `group/subgroup/name`), when given. */
  fullName: string | null;
  /** Clone, SSH and web URLs as given; matched after normalisation. */
  urls: string[];
}

const MAX_URL = 2048;
const MAX_URLS = 8;

/** Fields naming the repository, per forge; nothing else of the unverified body is looked at. */
const FIELDS: Record<Provider, { container: string[]; fullName: string; urls: string[] }> = {
  github: { container: ['repository'], fullName: 'full_name', urls: ['clone_url', 'ssh_url', 'html_url', 'git_url'] },
  gitea: { container: ['repository'], fullName: 'full_name', urls: ['clone_url', 'ssh_url', 'html_url'] },
  gitlab: { container: ['project', 'repository'], fullName: 'path_with_namespace', urls: ['git_http_url', 'git_ssh_url', 'web_url', 'http_url', 'ssh_url', 'homepage', 'url'] },
};

/** The repository a payload names, or null when it names none. */
export function repositoryIdentity(provider: Provider, payload: Record<string, unknown>): RepositoryIdentity | null {
  const fields = FIELDS[provider];
  let fullName: string | null = null;
  const urls: string[] = [];
  for (const key of fields.container) {
    const container = payload[key];
    if (typeof container !== 'object' || container === null || Array.isArray(container)) continue;
    const record = container as Record<string, unknown>;
    const name = record[fields.fullName];
    if (fullName === null && typeof name === 'string' && name.length > 0 && name.length <= 255) fullName = name;
    for (const field of fields.urls) {
      const url = record[field];
      if (typeof url === 'string' && url.length > 0 && url.length <= MAX_URL && !urls.includes(url) && urls.length < MAX_URLS) urls.push(url);
    }
  }
  return fullName === null && urls.length === 0 ? null : { fullName, urls };
}
