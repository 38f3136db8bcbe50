import {
  ClientClosedError, Etcd3, EtcdLeaseInvalidError, GRPCCancelledError, GRPCDeadlineExceededError, GRPCUnavailableError, type IOptions, type Watcher,
} from 'etcd3';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';

/** Longest pause between attempts to re-establish etcd watches (the client's default grows to 30 s). */
export const WATCH_RECONNECT_MAX_MS = 1_000;
/** How long one etcd request may take before etcd counts as unreachable. */
export const ETCD_CALL_TIMEOUT_MS = 5_000;

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
 * `dialTimeoutMs` defaults to 3 s.
 */
export function createEtcdClient(endpoints: readonly string[], options: { dialTimeoutMs?: number } = {}): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    dialTimeout: options.dialTimeoutMs ?? 3_000,
    faultHandling: { host: passThrough, watchBackoff: cappedBackoff(100) },
    // A member that went away without a reset (power lost, a partition) is noticed within ~15 s, not when TCP gives up
    // (~15 min) while a watch stream waits on it silently. Pings only while a call or stream is open, no closer than
    // etcd's --grpc-keepalive-min-time (5 s) allows.
    grpcOptions: { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000, 'grpc.keepalive_permit_without_calls': 0 },
  });
}

/** A watch that etcd cancelled. */
export interface WatchCancelled {
  err: Error;
  /** When the watch is made again (ms from now). */
  retryInMs: number;
}

/**
 * A watch that etcd's cancelling does not end. The etcd3 client re-connects
 * a watch after a lost stream from the revision it had seen; when etcd has
 * compacted past it (a quiet prefix while other keys changed, then any
 * blip), or was restored to an older revision, etcd cancels the watch, and
 * the client drops it for good with an `error`: whoever relied on it would
 * hear nothing more. Here the watch is made again, from now (`open` is
 * called anew and `attach` puts the handlers on; its `connected` says
 * "re-sync", as after any reconnection), after a pause that doubles while
 * etcd keeps cancelling, up to WATCH_RECONNECT_MAX_MS × 30. An etcd that
 * came back behind what the watch had seen (restored from an older
 * snapshot, or replaced by a new one) does not cancel it: it keeps a watch
 * from a revision it has not reached, and would hand it nothing until it
 * got there. Such a watch is made again from now, at once.
 */
export function lastingWatch(open: () => Watcher, attach: (watcher: Watcher) => void, onCancelled: (cancelled: WatchCancelled) => void = () => {}): { cancel(): Promise<void> } {
  let current: Watcher;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let pauseMs = 100;
  const start = () => {
    if (closed) return;
    const watcher = open();
    current = watcher;
    attach(watcher);
    // The revision a reconnection asks etcd to resume from (the client's, set as it sees changes).
    let resumeFrom: number | null = null;
    watcher.on('disconnected', () => {
      const revision = Number(watcher.lastRevision());
      resumeFrom = Number.isFinite(revision) ? revision : null;
    });
    watcher.on('connected', (res: { header?: { revision?: string } } | undefined) => {
      pauseMs = 100;
      const now = Number(res?.header?.revision);
      const from = resumeFrom;
      resumeFrom = null;
      if (from === null || !Number.isFinite(now) || now + 1 >= from || closed || watcher !== current) return;
      onCancelled({ err: new Error(`etcd is at revision ${now}, behind revision ${from - 1} this watch had seen (restored or replaced): watching again from now`), retryInMs: 0 });
      void watcher.cancel().catch(() => {});
      start();
    });
    watcher.on('error', (err: Error) => {
      if (closed || watcher !== current) return;
      onCancelled({ err, retryInMs: pauseMs });
      timer = setTimeout(start, pauseMs);
      timer.unref();
      pauseMs = Math.min(pauseMs * 2, WATCH_RECONNECT_MAX_MS * 30);
    });
  };
  start();
  return {
    cancel: async () => {
      closed = true;
      clearTimeout(timer);
      await current.cancel().catch(() => {});
    },
  };
}

/**
 * Translates what the etcd3 client throws, in this one place: a lost or
 * refused connection (including the client's open circuit breaker, which
 * fails fast after repeated connection errors) becomes UnavailableError,
 * worth retrying; anything else a non-retryable `etcd_error`.
 */
export function etcdError(err: unknown, doing: string): SlipwayError {
  if (err instanceof SlipwayError) return err;
  const message = err instanceof Error ? err.message.split('\n', 1)[0] : String(err);
  const unreachable = err instanceof GRPCUnavailableError
    || err instanceof GRPCDeadlineExceededError
    || err instanceof GRPCCancelledError
    || err instanceof ClientClosedError
    || err instanceof EtcdLeaseInvalidError
    || (err instanceof Error && ((err as { isBrokenCircuitError?: boolean }).isBrokenCircuitError === true || /ECONNREFUSED|ECONNRESET|No connection established/.test(err.message)));
  if (unreachable) return new UnavailableError('etcd', `etcd unreachable while ${doing}: ${message}`, { cause: err });
  // etcd's --max-txn-ops (128 unless raised): a switch takes 2 operations per replica (the old key and the new) and 3 more.
  const hint = /too many operations in txn request/.test(message ?? '') ? '; raise etcd\'s --max-txn-ops (a switch of N replicas takes 2N + 3; the etcd Slipway starts allows 1024)' : '';
  return new SlipwayError('etcd_error', `etcd failed while ${doing}: ${message}${hint}`, { cause: err });
}

/** Call options giving an etcd request a deadline (default ETCD_CALL_TIMEOUT_MS). */
export function etcdDeadline(ms = ETCD_CALL_TIMEOUT_MS): { deadline: Date } {
  return { deadline: new Date(Date.now() + ms) };
}

/**
 * Runs one etcd request with errors translated by etcdError and a hard
 * time limit (default ETCD_CALL_TIMEOUT_MS): a gRPC deadline is not always
 * honoured while etcd is going down (a request can hang on a half-closed
 * connection), and one hung request must not stall a rollout or the
 * router's queue.
 */
export async function etcdCall<T>(doing: string, request: () => Promise<T>, timeoutMs = ETCD_CALL_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new UnavailableError('etcd', `etcd did not answer within ${timeoutMs} ms while ${doing}`)), timeoutMs);
  });
  try {
    return await Promise.race([request(), timeout]);
  } catch (err) {
    throw etcdError(err, doing);
  } finally {
    clearTimeout(timer);
  }
}
