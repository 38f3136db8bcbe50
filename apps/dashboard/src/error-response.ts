import type { Request, Response } from 'express';
import { scrubSecrets } from '@slipway/core/logger';
import { SlipwayError } from '@slipway/core/slipway-error';

export interface ErrorResponse {
  status: number;
  body: { error: string; message: string };
}

/**
 * The JSON answer for any error: a SlipwayError keeps its code, and its
 * status when it has one; one without a status is an operation that could
 * not be done as asked (no such ref, no earlier release): 422. Express's
 * own client errors (a malformed body) become `bad_request`; anything else
 * is a 500 whose details stay in the log.
 */
export function errorResponse(err: unknown): ErrorResponse {
  if (err instanceof SlipwayError) {
    return { status: err.status ?? 422, body: { error: err.code, message: scrubSecrets(err.message) } };
  }
  const status = (err as { status?: unknown } | null)?.status ?? (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { status, body: { error: status === 413 ? 'payload_too_large' : 'bad_request', message: status === 413 ? 'the body is too large' : 'the request is malformed' } };
  }
  return { status: 500, body: { error: 'internal', message: 'internal error (details are in the dashboard log)' } };
}

/** A refusal in the form its client reads: `{error, message}` JSON under /api, one line of text elsewhere (pages, assets). */
export function sendError(req: Request, res: Response, status: number, code: string, message: string): void {
  res.setHeader('Cache-Control', 'no-store');
  if (req.path === '/api' || req.path.startsWith('/api/')) res.status(status).json({ error: code, message });
  else res.status(status).type('text/plain').send(`${message}\n`);
}
