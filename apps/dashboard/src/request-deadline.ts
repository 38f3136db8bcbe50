import type { ServerOptions } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { sendError } from './error-response.js';

/** How long a client has to send a request's headers (Node's own check, before any route runs). */
export const HEADERS_TIMEOUT_MS = 10_000;
/** How long a request may take, received and answered; live streams are exempt, downloads count from their last progress. */
export const REQUEST_TIMEOUT_MS = 30_000;

interface Deadline {
  timer: NodeJS.Timeout | undefined;
  ms: number;
  passed: boolean;
}

const deadlines = new WeakMap<Response, Deadline>();

/**
 * Node's limits for the dashboard's server: headers within
 * {@link HEADERS_TIMEOUT_MS}, the whole request within `requestTimeoutMs`
 * (a 408, then the connection is closed), checked every second. A stream
 * is a GET, complete once its headers are in, so this never cuts one.
 */
export function serverLimits(requestTimeoutMs = REQUEST_TIMEOUT_MS): ServerOptions {
  return {
    headersTimeout: Math.min(HEADERS_TIMEOUT_MS, requestTimeoutMs),
    requestTimeout: requestTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, requestTimeoutMs),
  };
}

/**
 * Every request must be received and answered within `ms`, so a client
 * that sends its body a byte a minute (slowloris) or stops reading its
 * answer cannot hold a connection: a request still arriving gets 408, one
 * with no answer yet 503, and an answer under way is cut; the connection
 * is closed in each case. Live streams opt out ({@link exemptFromDeadline});
 * long but moving answers push it on ({@link extendDeadline}).
 */
export function requestDeadline(ms = REQUEST_TIMEOUT_MS) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const deadline: Deadline = { timer: undefined, ms, passed: false };
    deadlines.set(res, deadline);
    arm(req, res, deadline, ms);
    res.once('close', () => clearTimeout(deadline.timer));
    next();
  };
}

/** Long-lived by design (Server-Sent Events): no deadline for this response. */
export function exemptFromDeadline(res: Response): void {
  const deadline = deadlines.get(res);
  if (deadline) clearTimeout(deadline.timer);
}

/** Restarts the deadline, `ms` from now (default: the full request timeout): a download that makes progress, an action that may take long. */
export function extendDeadline(req: Request, res: Response, ms?: number): void {
  const deadline = deadlines.get(res);
  if (deadline && !deadline.passed) arm(req, res, deadline, ms ?? deadline.ms);
}

/** Whether the deadline answered or cut this response (a late write by its route is expected then, not an error). */
export function deadlinePassed(res: Response): boolean {
  return deadlines.get(res)?.passed ?? false;
}

function arm(req: Request, res: Response, deadline: Deadline, ms: number): void {
  clearTimeout(deadline.timer);
  deadline.timer = setTimeout(() => {
    deadline.passed = true;
    if (res.headersSent) return void res.destroy();
    res.setHeader('Connection', 'close');
    const seconds = Math.round(ms / 100) / 10;
    if (!req.complete) sendError(req, res, 408, 'request_timeout', `The request did not arrive within ${seconds} s.`);
    else sendError(req, res, 503, 'timeout', `No answer within ${seconds} s; try again.`);
  }, ms);
}
