import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { dnsNames } from './dns-names.js';
import { readUpstreams } from './read-upstreams.js';
import { renderDnsHosts } from './render-dns-hosts.js';

export interface SyncDnsHostsOptions {
  app: AppConfig;
  dns: SlipwayConfig['dns'];
  etcd: Etcd3;
  /** dnsmasq's `--hostsdir`. */
  hostsDir: string;
  log?: (line: string) => void;
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
export async function syncDnsHosts(options: SyncDnsHostsOptions): Promise<DnsHostsSyncResult> {
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
