import { describe, expect, it } from 'vitest';
import { parseDnsHosts, renderDnsHosts } from './render-dns-hosts.js';

const app = { name: 'hello', port: 8080 };

describe('renderDnsHosts', () => {
  it('one line per address, numerically sorted, duplicates collapsed', () => {
    const hosts = renderDnsHosts(app, 'slipway.internal', ['127.0.10.10:8080', '127.0.10.9:8080', '127.0.10.9:8080']);
    expect(hosts.text).toBe('127.0.10.9 hello.slipway.internal\n127.0.10.10 hello.slipway.internal\n');
    expect(hosts.ips).toEqual(['127.0.10.9', '127.0.10.10']);
    expect(parseDnsHosts(hosts.text)).toEqual(hosts.ips);
  });

  it.each([
    ['another port (an A record carries none)', '127.0.0.1:32768', /not at the app's port 8080/],
    ['a host name', 'db.internal:8080', /not an IPv4 address/],
    ['an impossible address', '300.0.0.1:8080', /not an IPv4 address/],
  ])('skips %s and says why', (_what, address, reason) => {
    const hosts = renderDnsHosts(app, 'slipway.internal', [address]);
    expect(hosts.text).toBe('');
    expect(hosts.skipped[0]!.reason).toMatch(reason);
  });
});
