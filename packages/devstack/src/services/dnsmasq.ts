import { mkdirSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../wait-for.js';
import { spawnService } from '../processes.js';

export interface DnsmasqService {
  pid: number;
  port: number;
  /** `127.0.0.1:<port>`: what slipway.yml's `dns.server` should be. */
  server: string;
  /** Names under it are answered from `hostsDir` only. */
  domain: string;
  /** dnsmasq's `--hostsdir`: where Slipway writes one hosts file per `routing: dns` app. */
  hostsDir: string;
}

/** The domain of slipway.yml's default `dns.domain`. */
export const DEVSTACK_DNS_DOMAIN = 'slipway.internal';

/**
 * The dnsmasq argv of the stack. Pure; the same options as the one Slipway
 * runs in production (`dnsmasqArgv` of @slipway/router, which the devstack cannot
 * import: the router's tests depend on the devstack), checked against
 * `dnsmasq --help` 2.90: foreground, log to stderr, nothing forwarded, no
 * /etc/hosts, loopback only, `--hostsdir` re-read by inotify (a replaced
 * or removed file drops its old names), 1 s TTL.
 */
export function dnsmasqArgv(options: { port: number; domain: string; hostsDir: string; pidFile: string }): string[] {
  return [
    'dnsmasq', '--keep-in-foreground', '--log-facility=-', '--no-resolv', '--no-hosts',
    '--listen-address=127.0.0.1', '--bind-interfaces', `--port=${options.port}`,
    `--local=/${options.domain}/`, `--hostsdir=${options.hostsDir}`, '--local-ttl=1',
    `--pid-file=${options.pidFile}`,
    // Not `nobody` (dnsmasq's default when started as root): the hosts directory is private to the stack.
    `--user=${userInfo().username}`,
  ];
}

/** True when something answers DNS on 127.0.0.1:`port` for `domain` (NXDOMAIN counts: it answered). */
export async function dnsmasqAnswers(port: number, domain = DEVSTACK_DNS_DOMAIN): Promise<boolean> {
  const resolver = new Resolver({ timeout: 300, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  try {
    await resolver.resolve4(`devstack-probe.${domain}`);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOTFOUND' || code === 'ENODATA';
  }
}

/** dnsmasq on 127.0.0.1:`port` (UDP and TCP) answering `*.<domain>` from `<dir>/hosts`; log in `<dir>/dnsmasq.log`. */
export async function startDnsmasq(dir: string, port: number, domain = DEVSTACK_DNS_DOMAIN): Promise<DnsmasqService> {
  const hostsDir = join(dir, 'hosts');
  mkdirSync(hostsDir, { recursive: true });
  const pid = spawnService(dnsmasqArgv({ port, domain, hostsDir, pidFile: join(dir, 'dnsmasq.pid') }), join(dir, 'dnsmasq.log'));
  await waitFor(`dnsmasq on port ${port}`, () => dnsmasqAnswers(port, domain), { timeoutMs: 15_000, intervalMs: 50 });
  return { pid, port, server: `127.0.0.1:${port}`, domain, hostsDir };
}
