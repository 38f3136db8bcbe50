import type { Etcd3 } from 'etcd3';
import type { SlipwayConfig } from '@slipway/config/types';
import { SlipwayError } from '@slipway/core/slipway-error';
import { applyDnsNginxConf } from './apply-dns-nginx-conf.js';
import { runDnsmasq, type DnsmasqHandle } from './dnsmasq.js';
import { watchDnsHosts, type DnsHostsFeed } from './watch-dns-hosts.js';
import type { DnsHostsSyncResult } from './sync-dns-hosts.js';

export interface StartDnsRouterOptions {
  apps: SlipwayConfig['apps'];
  nginx: SlipwayConfig['nginx'];
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
