import { Etcd3, type IOptions } from 'etcd3';

/** Longest pause between attempts to re-establish etcd watches (the client's default grows to 30 s). */
export const WATCH_RECONNECT_MAX_MS = 1_000;

interface Backoff {
  readonly duration: number;
  next(context: unknown): Backoff;
}

const cappedBackoff = (duration: number): Backoff => ({
  duration,
  next: () => cappedBackoff(Math.min(Math.max(duration * 2, 100), WATCH_RECONNECT_MAX_MS)),
});

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;

/**
 * Lets every call try the connection. The client's default per-host circuit
 * breaker refuses all calls for 5 s after three failures, which turns a
 * one-second etcd restart into five seconds of "etcd unreachable" (and a
 * router that lags that long). Calls to a dead etcd still fail fast:
 * connection refused comes back at once.
 */
const passThrough = (): HostPolicy => {
  const noEvent = () => ({ dispose: () => {} });
  return {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: async (fn: (context: { signal: AbortSignal }) => unknown) => fn({ signal: new AbortController().signal }),
  } as unknown as HostPolicy;
};

/**
 * An etcd3 client for Slipway's processes: watches come back within about
 * a second of etcd answering again (the router relies on it to survive an
 * etcd restart), and calls are not held back by a circuit breaker.
 */
export function createEtcdClient(endpoints: readonly string[], options: { dialTimeoutMs?: number } = {}): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    dialTimeout: options.dialTimeoutMs ?? 3_000,
    faultHandling: { host: passThrough, watchBackoff: cappedBackoff(100) },
  });
}
