import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '@slipway/core/logger';

/** What each request carries in `res.locals`. */
export interface RequestLocals {
  /** Child logger: every line has `reqId` and `delivery`. Made on first use. */
  readonly log: Logger;
  /**
   * The forge's delivery id, once the handler has read it from valid
   * headers: set it before the first use of `log`. Null until then.
   */
  delivery: string | null;
  /** Fields added to the one summary line logged when the response ends. */
  summary: Record<string, unknown>;
}

/** Called once per request when its response has ended, after its summary line. */
export type RequestDone = (req: Request, res: Response, summary: Readonly<Record<string, unknown>>) => void;

class RequestScope implements RequestLocals {
  delivery: string | null = null;
  summary: Record<string, unknown> = {};
  private child: Logger | undefined;

  constructor(private readonly logger: Logger, readonly reqId: string) {}

  get log(): Logger {
    // Most requests log nothing but their summary line: a child logger is made only when needed.
    this.child ??= this.logger.child({ reqId: this.reqId, delivery: this.delivery });
    return this.child;
  }
}

/**
 * Gives each request an id (also sent back as X-Request-Id) and a child
 * logger bound to it and to the forge's delivery id, and logs one line
 * when the response ends: status, duration, outcome. Headers and bodies are
 * never logged, so neither are signatures, tokens or secrets.
 *
 * The summary line holds only fields named here and in the handler's
 * `summary` (numbers, the method and path, outcome words, job ids, a sha
 * and branch); it goes through a child without the logger's redaction,
 * whose 36 paths cost more than the rest of the line on this hot path.
 */
export function requestContext(logger: Logger, done?: RequestDone) {
  const summaryLog = logger.child({}, { redact: [] });
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = performance.now();
    const scope = new RequestScope(logger, randomUUID());
    // The summary starts as the line's `http` object, so ending a request builds no copy of it.
    scope.summary = { method: req.method, path: req.path.slice(0, 200) };
    res.locals = scope as unknown as Response['locals'];
    res.setHeader('X-Request-Id', scope.reqId);
    res.once('close', () => {
      const line = { reqId: scope.reqId, delivery: scope.delivery, status: res.statusCode, ms: Math.round((performance.now() - started) * 100) / 100, http: scope.summary };
      if (!res.writableFinished) summaryLog.warn({ ...line, aborted: true }, 'request aborted');
      else if (res.statusCode >= 500) summaryLog.warn(line, 'request failed');
      else summaryLog.info(line, 'request');
      done?.(req, res, scope.summary);
    });
    next();
  };
}
