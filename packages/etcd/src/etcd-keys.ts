import { isIPv6 } from 'node:net';
import type { Etcd3 } from 'etcd3';
import { etcdCall, etcdDeadline } from './etcd-client.js';

/**
 * Every etcd key Slipway reads or writes, in one place (the etcd keys
 * contract, docs/contracts.md). The upstream keys live under each app's
 * `etcd_prefix` (per-app configuration): `<prefix>/<container-id-12>` =
 * `host:port`, the shape a confd `{{range}}` over the prefix expects.
 * Everything else lives under `/slipway/`; app names match
 * `[a-z0-9][a-z0-9-]{0,62}`, so no app can collide with a name holding `_`.
 */
export const etcdKeys = {
  /** The upstream key of a container: `<prefix>/<id12>`. */
  upstream: (prefix: string, containerId: string) => `${prefix}/${containerId.slice(0, 12)}`,
  /** JSON `{sha, image, job, at}` of what is live. */
  release: (app: string) => `/slipway/apps/${app}/release`,
  /** Kept history: `<prefix><15-digit ms timestamp>` = the same JSON, so keys sort by time. */
  releases: (app: string) => `/slipway/apps/${app}/releases/`,
  releaseEntry: (app: string, at: Date) => `/slipway/apps/${app}/releases/${String(at.getTime()).padStart(15, '0')}`,
  /** One rollout per app: held on a lease, so a crashed holder frees it by itself. */
  lock: (app: string) => `/slipway/locks/${app}`,
  /** routing: dns: one allocation of `dns.address_pool` at a time, across apps and workers. */
  addressLock: '/slipway/locks/_address-pool',
  /**
   * routing: dns: held by the registrar serving the app, on its session
   * lease; a rollout refuses to switch a dns app nobody registers.
   */
  registrar: (app: string) => `/slipway/apps/${app}/registrar`,
  /**
   * Held by the `slipway router` that keeps the app's upstream keys on what
   * the engine moves (the swarm's task watcher, the port follower), on its
   * session lease: one at a time per app.
   */
  follower: (app: string) => `/slipway/apps/${app}/follower`,
};

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

/**
 * A `host:port` as stored under an app's etcd prefix. Values come from etcd,
 * where anyone with `etcdctl` can write, and end up in an nginx file: only
 * an IPv4 address, a bracketed IPv6 one or a plain host name and a port get
 * through, nothing that could close a directive or open a block.
 */
const ADDRESS = /^(?:(\d{1,3}(?:\.\d{1,3}){3})|([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)|\[([0-9A-Fa-f:.]{2,45})\]):(\d{1,5})$/;

export function isUpstreamAddress(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const m = ADDRESS.exec(value);
  if (!m) return false;
  if (m[1] && m[1].split('.').some((part) => Number(part) > 255)) return false;
  // An IPv6 address in brackets (a swarm node's), as nginx's `server` takes it.
  if (m[3] !== undefined && !isIPv6(m[3])) return false;
  const port = Number(m[4]);
  return port >= 1 && port <= 65535;
}

/** Reads the keys under `<prefix>/`. Throws UnavailableError when etcd cannot be reached. */
export async function readUpstreams(etcd: Etcd3, prefix: string): Promise<Upstreams> {
  const values = await etcdCall(`reading ${prefix}/`, () => etcd.getAll().prefix(`${prefix}/`).options(etcdDeadline()).strings());
  return upstreamsOf(prefix, Object.entries(values));
}

function upstreamsOf(prefix: string, entries: ReadonlyArray<[string, string]>): Upstreams {
  const live: UpstreamKey[] = [];
  const invalid: UpstreamKey[] = [];
  for (const [key, value] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const entry = { key, id: key.slice(prefix.length + 1), address: value.trim() };
    (isUpstreamAddress(entry.address) && !entry.id.includes('/') ? live : invalid).push(entry);
  }
  return { live, invalid };
}

/** What is live for one app in etcd: its upstream keys and its release record as stored (JSON, or null). */
export interface AppKeys {
  upstreams: Upstreams;
  release: string | null;
}

/** etcd refuses a transaction of more operations than this (its `--max-txn-ops` default). */
export const MAX_TXN_OPS = 128;

/**
 * The upstream keys and release record of many apps, read in as few round
 * trips as etcd allows: read-only transactions of up to MAX_TXN_OPS reads
 * (each app's two in the same one, so at one revision) instead of two
 * requests per app, which for 50 apps cost more than everything else a
 * status reads. Throws UnavailableError when etcd cannot be reached.
 */
export async function readAppsKeys(etcd: Etcd3, apps: ReadonlyArray<{ name: string; prefix: string }>): Promise<Map<string, AppKeys>> {
  const perTxn = Math.floor(MAX_TXN_OPS / 2);
  const chunks: Array<Array<{ name: string; prefix: string }>> = [];
  for (let i = 0; i < apps.length; i += perTxn) chunks.push(apps.slice(i, i + perTxn));
  const read = await Promise.all(chunks.map((chunk) => etcdCall(chunk.length === 1 ? `reading the upstream keys and release of ${chunk[0]!.name}` : `reading the upstream keys and releases of ${chunk.length} apps`, async () => {
    const success = await Promise.all(chunk.flatMap(({ name, prefix }) => [etcd.getAll().prefix(`${prefix}/`).op(), etcd.get(etcdKeys.release(name)).op()]));
    const { responses } = await etcd.kv.txn({ compare: [], success, failure: [] }, etcdDeadline());
    return chunk.map(({ name, prefix }, n): [string, AppKeys] => {
      const text = (i: number) => (responses[i]?.response_range?.kvs ?? []).map((kv): [string, string] => [kv.key.toString(), kv.value.toString()]);
      const release = text(2 * n + 1)[0];
      return [name, { upstreams: upstreamsOf(prefix, text(2 * n)), release: release ? release[1] : null }];
    });
  })));
  return new Map(read.flat());
}
