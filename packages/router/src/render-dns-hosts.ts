import { dnsNames } from './dns-names.js';

export interface DnsHosts {
  /** The hosts file: one `<ip> <app>.<domain>` line per address, sorted; empty when there is none. */
  text: string;
  /** The addresses answered, sorted. */
  ips: string[];
  /** Keys that cannot be answered by an A record for the app's port (another port, a host name), with why. */
  skipped: Array<{ address: string; reason: string }>;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * The dnsmasq hosts file of a `routing: dns` app from its live keys
 * (`ip:port`). Pure. An A record carries no port, so only addresses at the
 * app's own port can be answered (a dns app's containers are each
 * published on their own address at `app.port`); anything else is skipped
 * and reported, never written.
 */
export function renderDnsHosts(app: { name: string; port: number }, domain: string, addresses: readonly string[]): DnsHosts {
  const host = dnsNames.host(app.name, domain);
  const ips = new Set<string>();
  const skipped: DnsHosts['skipped'] = [];
  for (const address of addresses) {
    const [ip = '', port] = address.split(':');
    const m = IPV4.exec(ip);
    if (!m || m.slice(1).some((part) => Number(part) > 255)) skipped.push({ address, reason: 'not an IPv4 address' });
    else if (Number(port) !== app.port) skipped.push({ address, reason: `not at the app's port ${app.port}` });
    else ips.add(ip);
  }
  const sorted = [...ips].sort(compareIps);
  return { text: sorted.map((ip) => `${ip} ${host}\n`).join(''), ips: sorted, skipped };
}

export function compareIps(a: string, b: string): number {
  const key = (ip: string) => ip.split('.').map((p) => p.padStart(3, '0')).join('.');
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}

/** The IPs of a hosts file written by renderDnsHosts (what dnsmasq answers from it). */
export function parseDnsHosts(text: string): string[] {
  return text.split('\n').map((line) => line.trim().split(/\s+/)[0] ?? '').filter((ip) => IPV4.test(ip));
}
