import type { Etcd3 } from 'etcd3';
import { etcdCall, etcdDeadline } from './etcd-error.js';
import { isUpstreamAddress } from './upstream-address.js';

/** One key under an app's etcd prefix: `<prefix>/<container-id-12>` = `host:port`. */
export interface UpstreamKey {
  key: string;
  /** The last path segment: the container id (12 hex digits) when Slipway wrote it. */
  id: string;
  address: string;
}

export interface Upstreams {
  /** Valid entries, sorted by key. */
  live: UpstreamKey[];
  /** Entries whose value is not a `host:port` (written by hand?): never rendered. */
  invalid: UpstreamKey[];
}

/** Reads the keys under `<prefix>/`. Throws UnavailableError when etcd cannot be reached. */
export async function readUpstreams(etcd: Etcd3, prefix: string): Promise<Upstreams> {
  const values = await etcdCall(`reading ${prefix}/`, () => etcd.getAll().prefix(`${prefix}/`).options(etcdDeadline()).strings());
  const live: UpstreamKey[] = [];
  const invalid: UpstreamKey[] = [];
  for (const key of Object.keys(values).sort()) {
    const entry = { key, id: key.slice(prefix.length + 1), address: values[key]!.trim() };
    (isUpstreamAddress(entry.address) && !entry.id.includes('/') ? live : invalid).push(entry);
  }
  return { live, invalid };
}
