import { scrubSecrets } from './logger.js';

/**
 * Whose fault a failure is, which decides what users are told:
 * - `commit`: what was pushed does not deploy (its build fails, its
 *   containers never get healthy, nginx rejects its config): a commit
 *   status of `failure`; pushing it again will not help.
 * - `request`: what was asked for does not exist or is not allowed (an
 *   unknown app, job or ref; bad input): the CLI exits 2, a forge is told
 *   `failure`.
 * - `slipway`: Slipway could not do its part (a dependency unreachable,
 *   nginx would not reload, a bug): a commit status of `error`; trying
 *   again later may work.
 */
export type Fault = 'commit' | 'request' | 'slipway';

export interface SlipwayErrorOptions {
  /** HTTP status, where one applies. */
  status?: number;
  cause?: unknown;
  /** Default `slipway`. */
  fault?: Fault;
  /** Whether the same operation, tried again as it is, may succeed (a lost connection). Default false. */
  retryable?: boolean;
}

/**
 * The one error type Slipway throws on purpose. `code` is stable and is what
 * callers branch on; `status` is the HTTP status where one applies; `fault`
 * and `retryable` are the facts every consumer needs (commit statuses, the
 * worker's retries, the CLI's exit code), carried by the error so that no
 * consumer keeps its own list of codes. Messages are for people and may
 * change.
 */
export class SlipwayError extends Error {
  readonly code: string;
  readonly status: number | undefined;
  readonly fault: Fault;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: SlipwayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SlipwayError';
    this.code = code;
    this.status = options.status;
    this.fault = options.fault ?? 'slipway';
    this.retryable = options.retryable ?? false;
  }
}

/** Whose fault `err` is: a SlipwayError says; anything else (a bug, a library's error) is Slipway's. */
export function faultOf(err: unknown): Fault {
  return err instanceof SlipwayError ? err.fault : 'slipway';
}

/** Bad input from a user, a config file or a request: never worth retrying. */
export class InvalidInputError extends SlipwayError {
  constructor(message: string, options: { status?: number; code?: string } = {}) {
    super(options.code ?? 'invalid_input', message, { status: options.status ?? 400, fault: 'request' });
    this.name = 'InvalidInputError';
  }
}

/**
 * A dependency (Redis, etcd, Docker, nginx) could not be reached. Worth
 * retrying later: the operation itself was fine.
 */
export class UnavailableError extends SlipwayError {
  readonly service: string;

  constructor(service: string, message: string, options: { cause?: unknown } = {}) {
    super('unavailable', message, { status: 503, cause: options.cause, retryable: true });
    this.name = 'UnavailableError';
    this.service = service;
  }
}

export function isSlipwayError(err: unknown, code?: string): err is SlipwayError {
  return err instanceof SlipwayError && (code === undefined || err.code === code);
}

/** Whether trying the same thing again may work: only a SlipwayError that says so. */
export function isRetryable(err: unknown): boolean {
  return err instanceof SlipwayError && err.retryable;
}

/** First line of an error's message, the form shown in job lists. */
export function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n', 1)[0]?.trim() || 'unknown error';
}

/** An error as an HTTP answer: its status and the `{error, message}` JSON body of every Slipway service. */
export interface ErrorResponse {
  status: number;
  body: { error: string; message: string };
}

/**
 * The HTTP answer for any error, the same in every Slipway service: a
 * SlipwayError keeps its code and its status; without one, an operation
 * that could not be done as asked (`request` or `commit` fault) is 422, a
 * retryable one 503, anything else 500. Messages are scrubbed of URL
 * credentials. A framework's own client errors (a malformed URL or body)
 * become `bad_request` or `payload_too_large`; anything else is a 500
 * whose details belong in the log, never in the answer.
 */
export function errorResponse(err: unknown): ErrorResponse {
  if (err instanceof SlipwayError) {
    const status = err.status ?? (err.fault !== 'slipway' ? 422 : err.retryable ? 503 : 500);
    return { status, body: { error: err.code, message: scrubSecrets(err.message) } };
  }
  const status = (err as { status?: unknown } | null)?.status ?? (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return status === 413
      ? { status, body: { error: 'payload_too_large', message: 'the body is too large' } }
      : { status, body: { error: 'bad_request', message: 'the request is malformed' } };
  }
  return { status: 500, body: { error: 'internal', message: 'internal error (details are in the service\'s log)' } };
}
