import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import type { SlipwayConfig } from '@slipway/config/types';
import { sendError } from './error-response.js';

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
