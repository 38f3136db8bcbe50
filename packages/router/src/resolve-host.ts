import { Resolver } from 'node:dns/promises';
import { UnavailableError } from '@slipway/core/slipway-error';
import { compareIps } from './render-dns-hosts.js';

/** One DNS question's limit: dnsmasq on loopback answers in well under a millisecond. */
export const DNS_QUERY_TIMEOUT_MS = 500;

/**
 * Asks `server` (`ip:port`, as `dns.server`) for the A records of `name`,
 * as nginx's resolver would. Resolves with the sorted addresses, `[]` when
 * the name does not exist (NXDOMAIN) or has none. Throws
 * UnavailableError (service `dns`) when the server does not answer or
 * refuses: nothing can be resolved through it.
 */
export async function resolveHost(server: string, name: string, options: { timeoutMs?: number } = {}): Promise<string[]> {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? DNS_QUERY_TIMEOUT_MS, tries: 1 });
  resolver.setServers([server]);
  try {
    return (await resolver.resolve4(name)).sort(compareIps);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
    const why = code === 'EREFUSED' ? 'refused the query (does it serve this domain?)' : `did not answer (${code ?? (err as Error).message})`;
    throw new UnavailableError('dns', `DNS server ${server} ${why} for ${name}`, { cause: err });
  }
}
