import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '@slipway/core/logger';
import { isProvider } from '@slipway/forges/provider';
import { readWebhookHeaders } from '@slipway/forges/read-webhook-headers';

/** What each request carries in `res.locals`. */
export interface RequestLocals {
  /** Child logger: every line has `reqId` and `delivery`. */
  log: Logger;
  /** Fields added to the one summary line logged when the response ends. */
  summary: Record<string, unknown>;
}

/**
 * Gives each request an id (also sent back as X-Request-Id) and a child
 * logger bound to it and to the forge's delivery id, and logs one line
 * when the response ends: status, duration, outcome. Headers and bodies are
 * never logged, so neither are signatures, tokens or secrets.
 */
export function requestContext(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    const reqId = randomUUID();
    const log = logger.child({ reqId, delivery: deliveryOf(req) });
    const locals = res.locals as RequestLocals;
    locals.log = log;
    locals.summary = {};
    res.setHeader('X-Request-Id', reqId);
    res.once('close', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      // Details nest under one key: the logger's redaction costs about 5 µs per top-level key.
      const line = { status: res.statusCode, ms: Math.round(ms * 100) / 100, http: { method: req.method, path: req.path.slice(0, 200), ...locals.summary } };
      if (!res.writableFinished) log.warn({ ...line, aborted: true }, 'request aborted');
      else if (res.statusCode >= 500) log.warn(line, 'request failed');
      else log.info(line, 'request');
    });
    next();
  };
}

/** The delivery id for log lines, or null when absent or unreadable (the handler reports why). */
function deliveryOf(req: Request): string | null {
  const provider = /^\/hooks\/([a-z]+)\/?$/.exec(req.path)?.[1];
  if (!isProvider(provider)) return null;
  try {
    return readWebhookHeaders(provider, req.headersDistinct).delivery;
  } catch {
    return null;
  }
}
