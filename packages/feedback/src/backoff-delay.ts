import type { RetryPolicy } from './retry-policy.js';

/**
 * Milliseconds to wait after failed try number `attempt` (1-based):
 * exponential from `baseDelayMs`, at least what the target asked for
 * (Retry-After), never more than `maxDelayMs`.
 */
export function backoffDelay(policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>, attempt: number, retryAfterMs?: number): number {
  const exponential = policy.baseDelayMs * 2 ** Math.max(0, attempt - 1);
  return Math.min(policy.maxDelayMs, Math.max(exponential, retryAfterMs ?? 0));
}
