import { describe, expect, it } from 'vitest';
import { dnsmasqArgv, splitServer } from './dns-server.js';

describe('dnsmasqArgv', () => {
  it('answers only the domain, from the hosts directory, on dns.server, in the foreground, forwarding nothing', () => {
    expect(dnsmasqArgv({ server: '127.0.0.1:5353', domain: 'slipway.internal', hostsDir: '/w/dns/hosts', pidFile: '/w/dns/dnsmasq.pid', user: 'slipway' })).toEqual([
      'dnsmasq', '--keep-in-foreground', '--log-facility=-', '--no-resolv', '--no-hosts',
      '--listen-address=127.0.0.1', '--bind-interfaces', '--port=5353', '--local=/slipway.internal/',
      '--hostsdir=/w/dns/hosts', '--local-ttl=1', '--pid-file=/w/dns/dnsmasq.pid', '--user=slipway',
    ]);
  });

  it.each([['127.0.0.1:5353', '127.0.0.1', 5353], ['10.0.0.2', '10.0.0.2', 53]])('splits %s', (server, ip, port) => {
    expect(splitServer(server)).toEqual({ ip, port });
  });
});
