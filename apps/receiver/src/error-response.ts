import { SlipwayError } from '@slipway/core/slipway-error';

export interface ErrorResponse {
  status: number;
  body: { error: string; message: string };
}

/**
 * The JSON answer for any error: a SlipwayError keeps its code and status;
 * express's own client errors (a malformed URL, say) become `bad_request`;
 * anything else is a 500 whose details stay in the log.
 */
export function errorResponse(err: unknown): ErrorResponse {
  if (err instanceof SlipwayError && err.status !== undefined) {
    return { status: err.status, body: { error: err.code, message: err.message } };
  }
  const status = (err as { status?: unknown; statusCode?: unknown } | null)?.status ?? (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { status, body: { error: status === 413 ? 'payload_too_large' : 'bad_request', message: status === 413 ? 'the body is too large' : 'the request is malformed' } };
  }
  return { status: 500, body: { error: 'internal', message: 'internal error' } };
}
