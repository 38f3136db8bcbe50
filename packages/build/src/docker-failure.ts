import { UnavailableError } from '@slipway/core/slipway-error';
import { BuildError } from './build-error.js';

const UNREACHABLE = new Set(['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'EACCES', 'ESOCKETTIMEDOUT', 'UND_ERR_SOCKET']);

/**
 * A dockerode failure of the build request itself (not a failed step):
 * no connection → {@link UnavailableError} (retry later); Docker refusing
 * the request (bad Dockerfile path, bad option) → {@link BuildError}.
 */
export function dockerFailure(err: unknown): Error {
  const e = err as { code?: string; statusCode?: number; json?: { message?: string } | null; message?: string; reason?: string };
  if (e?.code && UNREACHABLE.has(e.code)) {
    return new UnavailableError('docker', `Docker is unreachable: ${e.message ?? e.code}`, { cause: err });
  }
  if (typeof e?.statusCode === 'number') {
    const detail = e.json?.message ?? e.reason ?? e.message ?? `HTTP ${e.statusCode}`;
    if (e.statusCode >= 500 && /connection refused|cannot connect|is the docker daemon running/i.test(detail)) {
      return new UnavailableError('docker', `Docker is unreachable: ${detail}`, { cause: err });
    }
    return new BuildError(`docker build failed: ${String(detail).split('\n', 1)[0]}`, { cause: err });
  }
  if (err instanceof TypeError || err instanceof RangeError) return err;
  return new UnavailableError('docker', `Docker build request failed: ${e?.message ?? String(err)}`, { cause: err });
}
