import { scanJsonFields, type WantedFields } from './json-field-scan.js';
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

const MAX_NAME = 255;
const MAX_URL = 2048;
const MAX_URLS = 8;

/** Fields naming the repository, per forge; nothing else of the unverified body is looked at. */
const FIELDS: Record<Provider, { container: string[]; fullName: string; urls: string[] }> = {
  github: { container: ['repository'], fullName: 'full_name', urls: ['clone_url', 'ssh_url', 'html_url', 'git_url'] },
  gitea: { container: ['repository'], fullName: 'full_name', urls: ['clone_url', 'ssh_url', 'html_url'] },
  gitlab: { container: ['project', 'repository'], fullName: 'path_with_namespace', urls: ['git_http_url', 'git_ssh_url', 'web_url', 'http_url', 'ssh_url', 'homepage', 'url'] },
};

/** The same fields, as the scanner of unparsed bodies wants them. */
const wanted = (f: (typeof FIELDS)[Provider]): WantedFields => ({ containers: f.container, fields: [f.fullName, ...f.urls], maxLength: Math.max(MAX_NAME, MAX_URL) });
const WANTED: Record<Provider, WantedFields> = { github: wanted(FIELDS.github), gitea: wanted(FIELDS.gitea), gitlab: wanted(FIELDS.gitlab) };

/** What reading an unparsed body found: not JSON, JSON but not an object, or the repository it names (null: none). */
export type ScannedIdentity = { kind: 'invalid' } | { kind: 'not_object' } | { kind: 'object'; identity: RepositoryIdentity | null };

/** The repository a parsed payload names, or null when it names none. */
export function repositoryIdentity(provider: Provider, payload: Record<string, unknown>): RepositoryIdentity | null {
  return identityOf(provider, (key) => {
    const container = payload[key];
    return typeof container === 'object' && container !== null && !Array.isArray(container) ? (container as Record<string, unknown>) : null;
  });
}

/**
 * The repository a JSON body names, read without parsing the body (see
 * json-field-scan.ts), which is validated as JSON on the way. Gives the
 * same identity as `repositoryIdentity` of the parsed body. `json` must be
 * valid UTF-8.
 */
export function scanRepositoryIdentity(provider: Provider, json: Uint8Array): ScannedIdentity {
  const scan = scanJsonFields(json, WANTED[provider]);
  if (scan.kind !== 'object') return scan;
  return { kind: 'object', identity: identityOf(provider, (key) => {
    const fields = scan.containers.get(key);
    return fields ? Object.fromEntries(fields) : null;
  }) };
}

function identityOf(provider: Provider, container: (key: string) => Record<string, unknown> | null): RepositoryIdentity | null {
  const fields = FIELDS[provider];
  let fullName: string | null = null;
  const urls: string[] = [];
  for (const key of fields.container) {
    const record = container(key);
    if (record === null) continue;
    const name = record[fields.fullName];
    if (fullName === null && typeof name === 'string' && name.length > 0 && name.length <= MAX_NAME) fullName = name;
    for (const field of fields.urls) {
      const url = record[field];
      if (typeof url === 'string' && url.length > 0 && url.length <= MAX_URL && !urls.includes(url) && urls.length < MAX_URLS) urls.push(url);
    }
  }
  return fullName === null && urls.length === 0 ? null : { fullName, urls };
}
