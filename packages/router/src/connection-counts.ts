import { CommandError, runCommand } from '@slipway/core/run-command';
import { countEstablished, readTcpSockets } from './proc-net-tcp.js';

/**
 * ESTABLISHED TCP connections accepted on each `ip:port` (the socket's
 * local end), in this network namespace.
 *
 * Asks `ss` first: it has the kernel filter by state and address (netlink
 * inet_diag), about 10 ms whatever else is open. Reading /proc/net/tcp
 * instead walks every socket, TIME_WAIT ones included: on a proxy host
 * with churn (tens of thousands of entries) that is 60-250 ms per reading.
 * /proc/net/tcp stays the fallback where `ss` is missing.
 */
export async function connectionCounts(addresses: readonly string[]): Promise<Map<string, number>> {
  if (addresses.length === 0) return new Map();
  const filter = ['(', ...addresses.flatMap((a, i) => (i === 0 ? ['src', a] : ['or', 'src', a])), ')'];
  try {
    const { stdout } = await runCommand(['ss', '-Htn', 'state', 'established', ...filter], { timeoutMs: 5_000 });
    const counts = new Map(addresses.map((a) => [a, 0]));
    for (const line of stdout.split('\n')) {
      // Recv-Q Send-Q Local Peer (no State column when a state is given).
      const local = line.trim().split(/\s+/)[2];
      const count = local === undefined ? undefined : counts.get(local);
      if (count !== undefined) counts.set(local!, count + 1);
    }
    return counts;
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    return countEstablished(await readTcpSockets(), addresses);
  }
}
