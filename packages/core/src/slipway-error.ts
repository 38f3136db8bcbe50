/**
 * The one error type Slipway throws on purpose. `code` is stable and is what
 * callers branch on; `status` is the HTTP status where one applies. Messages
 * are for people and may change.
 */
export class SlipwayError extends Error {
  readonly code: string;
  readonly status: number | undefined;

  constructor(code: string, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SlipwayError';
    this.code = code;
    this.status = options.status;
  }
}

/** Bad input from a user, a config file or a request: never worth retrying. */
export class InvalidInputError extends SlipwayError {
  constructor(message: string, options: { status?: number; code?: string } = {}) {
    super(options.code ?? 'invalid_input', message, { status: options.status ?? 400 });
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
    super('unavailable', message, { status: 503, cause: options.cause });
    this.name = 'UnavailableError';
    this.service = service;
  }
}

export function isSlipwayError(err: unknown, code?: string): err is SlipwayError {
  return err instanceof SlipwayError && (code === undefined || err.code === code);
}

/** First line of an error's message, the form shown in job lists. */
export function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n', 1)[0]?.trim() || 'unknown error';
}
