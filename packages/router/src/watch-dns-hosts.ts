import { mkdir } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { syncDnsHosts, type DnsHostsSyncResult } from './sync-dns-hosts.js';
import { watchAppPrefixes, type AppPrefixWatch } from './watch-app-prefixes.js';

/** Changes closer together than this are written once. */
export const DNS_FEED_DEBOUNCE_MS = 10;
/** Full re-sync period, as the nginx router's. */
export const DNS_FEED_RESYNC_INTERVAL_MS = 60_000;

export interface WatchDnsHostsOptions {
  /** The configuration's apps; only those with `routing: dns` are fed. */
  apps: SlipwayConfig['apps'];
  dns: SlipwayConfig['dns'];
  etcd: Etcd3;
  hostsDir: string;
  log?: (line: string) => void;
  /** Called after every app sync (tests, dashboards). */
  onSync?: (result: DnsHostsSyncResult) => void;
  /** Default DNS_FEED_DEBOUNCE_MS. */
  debounceMs?: number;
  /** Default DNS_FEED_RESYNC_INTERVAL_MS. */
  resyncIntervalMs?: number;
}

/** Stops feeding with `close()`. */
export type DnsHostsFeed = AppPrefixWatch;

/**
 * skydns's role, fed the confd way: keeps one dnsmasq hosts file per
 * `routing: dns` app equal to the live keys under its `etcd_prefix`. Syncs
 * every app once (throws UnavailableError when etcd is down at start), then
 * watches each prefix; a put or delete is in the file after
 * `debounceMs` plus a write and a rename, and dnsmasq answers it as soon
 * as inotify tells it (measured in the tests: well under 100 ms from the
 * etcd change to the new answer). A watch that comes back after etcd was
 * away re-syncs its app.
 */
export async function watchDnsHosts(options: WatchDnsHostsOptions): Promise<DnsHostsFeed> {
  const log = options.log ?? (() => {});
  const apps = Object.values(options.apps).filter((app) => app.routing === 'dns');
  const debounceMs = options.debounceMs ?? DNS_FEED_DEBOUNCE_MS;
  await mkdir(options.hostsDir, { recursive: true });
  const sync = (app: AppConfig) => syncDnsHosts({ app, dns: options.dns, etcd: options.etcd, hostsDir: options.hostsDir, log });
  for (const app of apps) options.onSync?.(await sync(app));

  const watch = watchAppPrefixes({
    apps, etcd: options.etcd, debounceMs, log, onSync: options.onSync, doing: 'feeding DNS for', sync,
    resyncIntervalMs: options.resyncIntervalMs ?? DNS_FEED_RESYNC_INTERVAL_MS,
  });
  log(`DNS feed watching ${apps.length} app${apps.length === 1 ? '' : 's'}: ${apps.map((a) => `${a.name} (${a.etcd_prefix}/)`).join(', ') || 'none'}`);

  return watch;
}
