import type { ServerOptions } from 'node:http';
import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import type { SlipwayConfig } from '@slipway/config/types';

// What every request meets before any route: Node's own limits on a slow
// client, a deadline for the whole answer, the security headers, and the
// check that the Host it names is this dashboard's. A refusal here is
// `{error, message}` JSON under /api and a line of text elsewhere.

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

/** Only our own scripts, styles and connections; no framing; no referrer (job URLs) sent to other sites. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
  "font-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
].join('; ');

export function securityHeaders() {
  return (_req: Request, res: Response, next: NextFunction): void => {
    res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Referrer-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    next();
  };
}

/** What a `Host` header is checked against (see {@link hostRules}). */
export interface HostRules {
  /** Served on the port the dashboard listens on: its bind address or name, and the loopback names on a loopback or any-address bind. */
  bound: Set<string>;
  /** A bind on every address (0.0.0.0, ::): the address the client reached is served too. */
  anyAddress: boolean;
  /** Served with any port or none: the host of `public_url` and the `allowed_hosts`. */
  names: Set<string>;
  /** `allowed_hosts` entries `*.example.com`, as `.example.com`: any subdomain, not the domain itself. */
  suffixes: string[];
}

/** What a loopback bind answers to: the names a browser on the same machine reaches it by. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];
const DEFAULT_PORT = 80;
/** `name`, `name:port`, `[v6]` or `[v6]:port`; nothing else (no userinfo, no second colon). */
const HOST_HEADER = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9_.-]+))(?::(\d{1,5}))?$/i;

/**
 * The hosts the dashboard serves. A DNS-rebinding page sends a name of the
 * attacker's (`Host: evil.example:3001`), so the name is what decides:
 *
 * - its bind address (or name) at the port it listens on; a loopback or
 *   any-address bind also `localhost`, `127.0.0.1` and `[::1]` there, and an
 *   any-address bind the IP address the client reached (an IP address
 *   cannot be rebound);
 * - the host of `public_url` and every `allowed_hosts` entry with any port
 *   or none: behind a proxy Host carries the public name without a port
 *   (nginx's `$host`), and the port adds nothing against rebinding.
 *   `*.example.com` allows every subdomain of example.com.
 */
export function hostRules(dashboard: SlipwayConfig['dashboard']): HostRules {
  const bindHost = normalName(dashboard.host);
  const anyAddress = bindHost === '' || bindHost === '0.0.0.0' || bindHost === '::';
  const loopback = anyAddress || bindHost === 'localhost' || bindHost === '::1' || /^127\.\d+\.\d+\.\d+$/.test(bindHost);
  const bound = new Set(loopback ? LOOPBACK_NAMES : []);
  if (!anyAddress) bound.add(bindHost);
  const names = new Set<string>();
  const suffixes: string[] = [];
  if (dashboard.public_url) names.add(normalName(new URL(dashboard.public_url).hostname));
  for (const entry of dashboard.allowed_hosts) {
    const name = normalName(entry);
    if (name.startsWith('*.')) suffixes.push(name.slice(1));
    else names.add(name);
  }
  return { bound, anyAddress, names, suffixes };
}

/** Whether `header` (a request's Host) names this dashboard, reached on the connection's `local` address and port. */
export function isServedHost(rules: HostRules, header: string | undefined, local: { address?: string; port?: number }): boolean {
  const match = HOST_HEADER.exec(header ?? '');
  if (!match) return false;
  const name = normalName(match[1] ?? match[2]!);
  const port = match[3] === undefined ? DEFAULT_PORT : Number(match[3]);
  if (rules.names.has(name) || rules.suffixes.some((suffix) => name.endsWith(suffix))) return true;
  if (port !== local.port) return false;
  if (rules.bound.has(name)) return true;
  return rules.anyAddress && isIP(name) !== 0 && local.address !== undefined && name === normalName(local.address).replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

/**
 * Refuses every request whose Host the dashboard does not serve (DNS
 * rebinding: a page of the attacker's whose name now points at this
 * machine) with `421 Misdirected Request`: JSON under /api, a line of text
 * elsewhere. Ahead of every route, so nothing is served to such a page:
 * not the sign-in, not a static file, not a stream.
 */
export function hostCheck(dashboard: SlipwayConfig['dashboard']) {
  const rules = hostRules(dashboard);
  return (req: Request, res: Response, next: NextFunction): void => {
    const host = req.headers.host;
    if (isServedHost(rules, host, { address: req.socket.localAddress, port: req.socket.localPort })) return next();
    const shown = host === undefined ? 'no Host header' : `the host ${JSON.stringify(host.slice(0, 100))}`;
    sendError(req, res, 421, 'misdirected_host', `This dashboard does not answer to ${shown}. If that name is yours, add it to dashboard.allowed_hosts.`);
  };
}

/** Lower case, no IPv6 brackets, no trailing dot (`Example.COM.` is example.com). */
function normalName(name: string): string {
  return name.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
}

/** A refusal in the form its client reads: `{error, message}` JSON under /api, one line of text elsewhere (pages, assets). */
function sendError(req: Request, res: Response, status: number, code: string, message: string): void {
  res.setHeader('Cache-Control', 'no-store');
  if (req.path === '/api' || req.path.startsWith('/api/')) res.status(status).json({ error: code, message });
  else res.status(status).type('text/plain').send(`${message}\n`);
}
