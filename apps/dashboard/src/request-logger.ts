import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '@slipway/core/logger';

/**
 * One log line per request when it ends: method, path, status, duration.
 * Reads at debug level, changes and failures at info/warn. Headers (cookies,
 * tokens) and bodies are never logged.
 */
export function requestLogger(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    res.once('close', () => {
      const ms = Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100;
      const line = { method: req.method, path: req.path.slice(0, 200), status: res.statusCode, ms };
      if (res.statusCode >= 500) logger.warn(line, 'request failed');
      else if (req.method !== 'GET' && req.method !== 'HEAD') logger.info(line, 'request');
      else logger.debug(line, 'request');
    });
    next();
  };
}
