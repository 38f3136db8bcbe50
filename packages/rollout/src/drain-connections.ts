import { setTimeout as sleep } from 'node:timers/promises';
import { clientConnectionsHeld, connectionCounts, retiringWorkers } from '@slipway/router/nginx';
import { rolloutLog as say } from './rollout-log.js';

const POLL_MS = 100;
/** Zero must be seen this many polls in a row: a request read just before the reload connects a moment later. */
const ZERO_POLLS = 2;

export interface DrainResult {
  /** True when the old addresses carried no connection any more; false when `timeoutMs` ran out first. */
  drained: boolean;
  ms: number;
  /** Connections still open when it ended. */
  open: number;
  /** Per address, when some were still open. */
  openBy: Record<string, number>;
  /** routing: dns: how much of `ms` was the wait for nginx's resolver caches to expire. */
  settleMs?: number;
}

export interface DrainOptions {
  /** routing: dns: how long nginx may keep resolving the old addresses (waited first). */
  settleMs?: number;
  /** The app's `listen` on nginx: requests its retiring workers hold are waited for too. */
  listen?: string;
}

/**
 * After a switch that was put back (its apply failed): a router may have
 * rendered the switched keys before the revert, so what it sent the new
 * containers (or tasks) is let finish before they go, as any drain. With
 * `settleMs` (routing: dns: nginx's workers may have cached the switched
 * records) that long is waited first, as a dns drain does.
 */
export async function drainReverted(addresses: readonly string[], drainS: number, log: (line: string) => void, options: DrainOptions = {}): Promise<void> {
  if (addresses.length === 0) return;
  log(say.drainingReverted(addresses));
  log(say.drained(await drainConnections(addresses, drainS * 1000, options), drainS * 1000));
}

/**
 * Before strays go: one that carries connections is drained first. A
 * stray is not routed to by anyone, unless the rollout that made it the
 * previous release lost the app's lock (etcd unreachable past its lease)
 * and is draining it still; force-removed, its requests would be cut.
 * With `unrouted` (nginx was reloaded just before planning, and routed to
 * them until then) they are drained in full, whatever is open now.
 */
export async function drainBusyStrays(addresses: readonly string[], drainS: number, log: (line: string) => void, unrouted?: { listen: string }): Promise<void> {
  if (addresses.length === 0) return;
  if (unrouted) {
    // nginx routed to them until the reload that just caught it up: drained as after any switch (zero seen twice,
    // and nginx's retiring workers' requests let finish), not only when a connection is open at this instant.
    log(say.drainingUnrouted(addresses));
    log(say.drained(await drainConnections(addresses, drainS * 1000, unrouted), drainS * 1000));
    return;
  }
  const counts = await connectionCounts(addresses);
  const busy = [...counts].filter(([, n]) => n > 0).map(([address, n]) => `${address}: ${n}`);
  if (busy.length === 0) return;
  log(say.drainingStrays(busy));
  log(say.drained(await drainConnections(addresses, drainS * 1000), drainS * 1000));
}

/**
 * Waits until no ESTABLISHED TCP connection is left to any of `addresses`
 * (the old containers' published ports, or the old swarm tasks' on their
 * nodes: nginx runs in this network namespace, so its end of every
 * connection is seen here, and on one host docker-proxy's too; counted by
 * connectionCounts: `ss`, or /proc/net/tcp), or until `timeoutMs`.
 * Observed, not only timed: a quiet app is stopped at once, a slow request
 * is waited for. With `listen` (the app's address on nginx), also until
 * nginx's retiring workers hold no client connection to it: a request
 * whose body was still arriving at the reload, or sent later on a
 * connection an old worker had accepted, has no connection to an old
 * container yet, and reaches one once it is whole. With `settleMs`
 * (routing: dns: nginx's resolver cache, RESOLVER_CACHE_MS) that long is
 * waited first, whatever `timeoutMs` says.
 */
export async function drainConnections(addresses: readonly string[], timeoutMs: number, options: DrainOptions = {}): Promise<DrainResult> {
  if (options.settleMs) {
    // routing: dns: until every nginx worker's cached answer has expired, new requests can still pick an old
    // address, so zero connections proves nothing yet; this wait is not bounded by drain_s.
    const settled = Date.now();
    await sleep(options.settleMs);
    const result = await drainConnections(addresses, timeoutMs);
    return { ...result, ms: Date.now() - settled, settleMs: options.settleMs };
  }
  const started = Date.now();
  // Workers that retire later were told of the switch: only those retiring now may hold a request for the old set.
  const retiring = options.listen ? await retiringWorkers().catch(() => [] as number[]) : [];
  let zeros = 0;
  for (;;) {
    const counts = await connectionCounts(addresses);
    if (retiring.length > 0) {
      const held = await clientConnectionsHeld(retiring, options.listen!).catch(() => 0);
      if (held > 0) counts.set(`${options.listen} (clients of nginx's retiring workers)`, held);
    }
    const open = [...counts.values()].reduce((a, b) => a + b, 0);
    zeros = open === 0 ? zeros + 1 : 0;
    const ms = Date.now() - started;
    if (zeros >= ZERO_POLLS || (open === 0 && ms >= timeoutMs)) return { drained: true, ms, open: 0, openBy: {} };
    if (ms >= timeoutMs) return { drained: false, ms, open, openBy: Object.fromEntries([...counts].filter(([, n]) => n > 0)) };
    await sleep(Math.min(POLL_MS, Math.max(timeoutMs - ms, 1)));
  }
}
