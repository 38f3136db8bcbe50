import {
  ClientClosedError, EtcdLeaseInvalidError, GRPCCancelledError, GRPCDeadlineExceededError, GRPCUnavailableError,
} from 'etcd3';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';

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
  return new SlipwayError('etcd_error', `etcd failed while ${doing}: ${message}`, { cause: err });
}

/** How long one etcd request may take before etcd counts as unreachable. */
export const ETCD_CALL_TIMEOUT_MS = 5_000;

/** Call options giving an etcd request a deadline. */
export function etcdDeadline(ms = ETCD_CALL_TIMEOUT_MS): { deadline: Date } {
  return { deadline: new Date(Date.now() + ms) };
}

/**
 * Runs one etcd request with errors translated by etcdError and a hard
 * time limit: a gRPC deadline is not always honoured while etcd is going
 * down (a request can hang on a half-closed connection), and one hung
 * request must not stall a rollout or the router's queue.
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
