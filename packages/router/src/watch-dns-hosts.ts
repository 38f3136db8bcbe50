import { mkdir } from 'node:fs/promises';
import type { Etcd3, Watcher } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { UnavailableError, firstLine } from '@slipway/core/slipway-error';
import { etcdError } from './etcd-error.js';
import { syncDnsHosts, type DnsHostsSyncResult } from './sync-dns-hosts.js';

/** Changes closer together than this are written once. */
export const DNS_FEED_DEBOUNCE_MS = 10;
/** Full re-sync period, as the nginx router's. */
export const DNS_FEED_RESYNC_INTERVAL_MS = 60_000;
const RETRY_MS = 1_000;

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

export interface DnsHostsFeed {
  /** Stops watching; resolves once a sync in progress has finished. */
  close(): Promise<void>;
}

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

  const dirty = new Set<string>();
  let closed = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const runPending = async () => {
    while (dirty.size > 0 && !closed) {
      const names = [...dirty];
      dirty.clear();
      for (const name of names) {
        try {
          const result = await sync(options.apps[name]!);
          options.onSync?.(result);
        } catch (err) {
          const error = err instanceof UnavailableError ? err : etcdError(err, `feeding DNS for ${name}`);
          log(`${name}: ${error.message}; retrying in ${RETRY_MS} ms`);
          setTimeout(() => markDirty(name), RETRY_MS).unref();
        }
      }
    }
  };
  const markDirty = (name: string) => {
    if (closed) return;
    dirty.add(name);
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      running = running.then(runPending);
    }, debounceMs);
  };

  const lost = new Set<string>();
  const watchers: Watcher[] = apps.map((app) => options.etcd.watch().prefix(`${app.etcd_prefix}/`).watcher()
    .on('put', () => markDirty(app.name))
    .on('delete', () => markDirty(app.name))
    .on('connected', () => {
      if (lost.delete(app.name)) log(`${app.name}: etcd watch re-established; re-syncing DNS`);
      markDirty(app.name);
    })
    .on('disconnected', (err: Error) => {
      if (!lost.has(app.name)) log(`${app.name}: etcd watch lost (${firstLine(err)}); reconnecting`);
      lost.add(app.name);
    })
    .on('error', (err: Error) => log(`${app.name}: etcd watch error: ${firstLine(err)}`)));
  const resync = setInterval(() => apps.forEach((app) => markDirty(app.name)), options.resyncIntervalMs ?? DNS_FEED_RESYNC_INTERVAL_MS);
  resync.unref();
  log(`DNS feed watching ${apps.length} app${apps.length === 1 ? '' : 's'}: ${apps.map((a) => `${a.name} (${a.etcd_prefix}/)`).join(', ') || 'none'}`);

  return {
    close: async () => {
      closed = true;
      clearInterval(resync);
      if (timer) clearTimeout(timer);
      await Promise.all(watchers.map((w) => w.cancel().catch(() => {})));
      await running;
    },
  };
}
