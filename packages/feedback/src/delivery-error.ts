import { SlipwayError } from '@slipway/core/slipway-error';

/**
 * A commit status or notification the target did not take. `retryable`
 * says whether trying again later may help (no answer, a timeout, 408, 429,
 * 5xx); `httpStatus` is the target's answer, when there was one. Messages
 * never hold a token, a secret or a URL's credentials.
 */
export class DeliveryError extends SlipwayError {
  readonly httpStatus: number | undefined;
  /** Milliseconds the target asked us to wait (Retry-After), when it did. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: { retryable: boolean; httpStatus?: number; retryAfterMs?: number; cause?: unknown }) {
    super('delivery_failed', message, { cause: options.cause, retryable: options.retryable });
    this.name = 'DeliveryError';
    this.httpStatus = options.httpStatus;
    this.retryAfterMs = options.retryAfterMs;
  }
}
