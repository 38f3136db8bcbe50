import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { SlipwayError } from '@slipway/core/slipway-error';
import { isAppName } from '@slipway/core/validate';
import { readUpstreams } from '@slipway/etcd/keys';
import { runDnsmasq, type DnsmasqHandle } from './dns-server.js';
import { applyDnsNginxConf } from './nginx-apply.js';
import type { NginxTarget } from './nginx-reload.js';
import { dnsNames, renderDnsHosts } from './render.js';
import { watchAppPrefixes, type AppPrefixWatch } from './watch.js';

/*
 * The DNS half of `slipway router`, for routing: dns apps: skydns's role,
 * fed the confd way. etcd keys → one dnsmasq hosts file per app, watched.
 */

/** Changes closer together than this are written once. */
export const DNS_FEED_DEBOUNCE_MS = 10;
/** Full re-sync period, as the nginx router's. */
export const DNS_FEED_RESYNC_INTERVAL_MS = 60_000;

export interface StartDnsRouterOptions {
  apps: SlipwayConfig['apps'];
  nginx: NginxTarget;
  dns: SlipwayConfig['dns'];
  etcd: Etcd3;
  /** dnsmasq's `--hostsdir`, written by Slipway (see `dnsmasqPaths(workdir)`). */
  hostsDir: string;
  /**
   * Run dnsmasq as a child of this process on `dns.server` (production), or
   * `false` to feed a dnsmasq started elsewhere with `--hostsdir=hostsDir`
   * (the devstack's `dns` service).
   */
  dnsmasq: false | { pidFile: string; bin?: string; user?: string };
  log?: (line: string) => void;
  onSync?: (result: DnsHostsSyncResult) => void;
}

export interface DnsRouterHandle {
  /** The dnsmasq run by this process, if any. */
  dnsmasq: DnsmasqHandle | null;
  close(): Promise<void>;
}

/**
 * The DNS half of `slipway router`, for `routing: dns` apps: runs dnsmasq
 * (unless told one runs elsewhere), feeds it from etcd (watchDnsHosts), and
 * brings the nginx file of every dns app that already has one in line with
 * the configuration (a reload only when the configuration changed it; the
 * first file is written by the app's first rollout). With no dns app it
 * starts nothing. Throws UnavailableError when etcd is down at start, and
 * `dnsmasq_failed` when dnsmasq cannot be started.
 */
export async function startDnsRouter(options: StartDnsRouterOptions): Promise<DnsRouterHandle> {
  const log = options.log ?? (() => {});
  const apps = Object.values(options.apps).filter((app) => app.routing === 'dns');
  if (apps.length === 0) return { dnsmasq: null, close: async () => {} };

  if (options.dnsmasq !== false) await removeUnconfiguredHosts(options.hostsDir, new Set(apps.map((app) => app.name)), log);
  const dnsmasq = options.dnsmasq === false ? null : await runDnsmasq({
    ...options.dnsmasq, server: options.dns.server, domain: options.dns.domain, hostsDir: options.hostsDir, log,
  });
  let feed: DnsHostsFeed;
  try {
    feed = await watchDnsHosts({ apps: options.apps, dns: options.dns, etcd: options.etcd, hostsDir: options.hostsDir, log, onSync: options.onSync });
  } catch (err) {
    await dnsmasq?.close();
    throw err;
  }
  for (const app of apps) {
    try {
      const result = await applyDnsNginxConf({ nginx: options.nginx, app, dns: options.dns, onlyIfExists: true });
      if (result.changed) log(`${app.name}: ${result.file} rewritten for the current configuration (nginx reload ${result.reload?.outcome ?? 'skipped'})`);
    } catch (err) {
      const why = err instanceof SlipwayError ? `${err.code}: ${err.message}` : (err as Error).message;
      log(`${app.name}: keeping its nginx file as it is: ${why}`);
    }
  }
  return {
    dnsmasq,
    close: async () => {
      await feed.close();
      await dnsmasq?.close();
    },
  };
}

/**
 * Removes, from the hosts directory of Slipway's own dnsmasq, the files of
 * apps that are no `routing: dns` app any more (removed, renamed, moved to
 * upstream): dnsmasq would answer their names still, and an app added back
 * with no live key yet would be answered with the addresses it had then.
 */
async function removeUnconfiguredHosts(hostsDir: string, apps: ReadonlySet<string>, log: (line: string) => void): Promise<void> {
  for (const name of await readdir(hostsDir).catch(() => [] as string[])) {
    if (name.startsWith('.') || apps.has(name) || !isAppName(name)) continue;
    await rm(join(hostsDir, name), { force: true });
    log(`removed ${join(hostsDir, name)}: no routing: dns app of that name is configured any more`);
  }
}

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

export interface DnsHostsSyncResult {
  app: string;
  /**
   * `written`: dnsmasq now answers the keys; `unchanged`: it already did;
   * `empty`: no live key, the previous file was kept (as the nginx router
   * keeps the previous upstream rather than take the app offline).
   */
  outcome: 'written' | 'unchanged' | 'empty';
  file: string;
  ips: string[];
}

/**
 * One `routing: dns` app, etcd → its dnsmasq hosts file, once. The file is
 * written beside its final name as `.<app>.<rand>.tmp` (dnsmasq ignores dot
 * files) and renamed over it, so dnsmasq reads whole files only. Throws
 * UnavailableError when etcd cannot be reached.
 */
async function syncDnsHosts(options: { app: AppConfig; dns: SlipwayConfig['dns']; etcd: Etcd3; hostsDir: string; log?: (line: string) => void }): Promise<DnsHostsSyncResult> {
  const { app, hostsDir } = options;
  const log = options.log ?? (() => {});
  const file = dnsNames.hostsFile(hostsDir, app.name);
  const { live, invalid } = await readUpstreams(options.etcd, app.etcd_prefix);
  for (const entry of invalid) log(`${app.name}: ignoring ${entry.key} = ${JSON.stringify(entry.address.slice(0, 80))}: not a host:port`);
  const hosts = renderDnsHosts(app, options.dns.domain, live.map((u) => u.address));
  for (const s of hosts.skipped) log(`${app.name}: not answering ${s.address} in DNS: ${s.reason}`);
  if (hosts.ips.length === 0) {
    log(`${app.name}: no live address under ${app.etcd_prefix}/, keeping ${file} as it is`);
    return { app: app.name, outcome: 'empty', file, ips: [] };
  }
  const previous = await readFile(file, 'utf8').catch(() => null);
  if (previous === hosts.text) return { app: app.name, outcome: 'unchanged', file, ips: hosts.ips };
  const temp = join(hostsDir, `.${app.name}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(temp, hosts.text, { mode: 0o644 });
    await rename(temp, file);
  } finally {
    await rm(temp, { force: true });
  }
  log(`${app.name}: ${dnsNames.host(app.name, options.dns.domain)} now answers ${hosts.ips.join(', ')}`);
  return { app: app.name, outcome: 'written', file, ips: hosts.ips };
}
