import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';

const UNREACHABLE = new Set(['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EACCES', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * Translates what dockerode throws, in this one place: no engine at the
 * socket (or a connection cut) becomes UnavailableError, worth retrying;
 * an answer from the engine is a non-retryable `docker_error` carrying its
 * HTTP status.
 */
export function dockerError(err: unknown, doing: string): SlipwayError {
  if (err instanceof SlipwayError) return err;
  const e = err as { code?: string; statusCode?: number; json?: { message?: string }; message?: string };
  const message = (e.json?.message ?? e.message ?? String(err)).split('\n', 1)[0];
  if ((e.code && UNREACHABLE.has(e.code)) || /socket hang up/.test(e.message ?? '')) {
    return new UnavailableError('docker', `Docker unreachable while ${doing}: ${message}`, { cause: err });
  }
  return new SlipwayError('docker_error', `Docker failed while ${doing}: ${message}`, { status: e.statusCode, cause: err });
}

/** The HTTP status Docker answered with, if it answered. */
export function dockerStatus(err: unknown): number | undefined {
  return (err as { statusCode?: number }).statusCode;
}
