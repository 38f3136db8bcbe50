import { setTimeout as sleep } from 'node:timers/promises';
import type { SlipwayConfig } from '@slipway/config/types';
import { UnavailableError } from '@slipway/core/slipway-error';
import { compareIps, dnsNames, renderDnsNginxConf, resolveHost } from '@slipway/router/dns';
import { prepareNginxConf } from '@slipway/router/nginx';
import type { RouteProxy } from './route-proxy.js';

/** How long the DNS server may take to answer the new set after the switch (the feed needs milliseconds). */
export const DNS_SWITCH_TIMEOUT_MS = 5_000;
const POLL_MS = 20;

/**
 * The proxy seam for routing: dns. Traffic follows DNS: the switch's etcd
 * transaction is what changes routing (the DNS feed of `slipway router`
 * writes it to dnsmasq), and commit only confirms that `dns.server` answers
 * the new set. The nginx file does not depend on the containers: it is
 * written (checked, renamed, reloaded) only the first time or after a
 * configuration change, and otherwise never touched; nginx's own resolver
 * picks the new set up within RESOLVER_CACHE_MS, which the drain waits out.
 */
export function dnsRouteProxy(nginx: SlipwayConfig['nginx'], dns: SlipwayConfig['dns']): RouteProxy {
  const host = (app: string) => dnsNames.host(app, dns.domain);
  return {
    /** What the DNS server answers now, as `ip:port`; throws UnavailableError (service `dns`) when it does not answer. */
    async routed(app) {
      return (await resolveHost(dns.server, host(app.name))).map((ip) => `${ip}:${app.port}`);
    },

    async prepare(app, addresses) {
      const prepared = await prepareNginxConf({ nginx, app, content: renderDnsNginxConf({ app, dns }) });
      const wanted = [...new Set(addresses.map((a) => a.split(':')[0]!))].sort(compareIps);
      return {
        // The DNS answer always changes with a new set of containers.
        changed: true,
        fileChanged: prepared.changed,
        discard: () => prepared.discard(),
        commit: async () => {
          const started = Date.now();
          let answer: string[] = [];
          let problem = '';
          for (;;) {
            try {
              answer = await resolveHost(dns.server, host(app.name));
              problem = '';
            } catch (err) {
              problem = (err as Error).message;
            }
            if (!problem && answer.join() === wanted.join()) break;
            if (Date.now() - started > DNS_SWITCH_TIMEOUT_MS) {
              await prepared.discard();
              throw new UnavailableError('dns', `${dns.server} did not answer ${host(app.name)} with ${wanted.join(', ')} within ${DNS_SWITCH_TIMEOUT_MS} ms of the switch `
                + `(${problem || `it answers ${answer.join(', ') || 'nothing'}`}); is \`slipway router\` (which feeds it from etcd) running?`);
            }
            await sleep(POLL_MS);
          }
          const dnsMs = Date.now() - started;
          // First deploy or a configuration change: written after DNS answers, so nginx never resolves an empty name.
          const applied = await prepared.commit();
          return { reloaded: applied.reloaded, confirmed: true, ms: Date.now() - started, dnsMs };
        },
      };
    },
  };
}
