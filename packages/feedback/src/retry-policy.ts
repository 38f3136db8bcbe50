/** How a commit status or notification is retried in the background. */
export interface RetryPolicy {
  /** Tries in all, the first included. Default 5. */
  attempts: number;
  /** Wait before the second try; doubled for each one after. Default 1000 ms. */
  baseDelayMs: number;
  /** No wait is longer than this (a Retry-After included). Default 30 s. */
  maxDelayMs: number;
  /** One try is abandoned after this long. Default 10 s. */
  timeoutMs: number;
}

/** About 15 s of waiting over five tries: a forge restarting is caught, one that is down costs five requests. */
export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = { attempts: 5, baseDelayMs: 1000, maxDelayMs: 30_000, timeoutMs: 10_000 };
