import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '@slipway/core/logger';
import { readCookie } from './read-cookie.js';
import { SESSION_COOKIE, type Session, type SessionAuth } from './session-auth.js';
import { setSessionCookie } from './session-cookie.js';
import type { SignInThrottle } from './sign-in-throttle.js';

/** Who a request is: a signed-in browser, or a client with the token as a Bearer. */
export type Auth = { kind: 'session'; session: Session } | { kind: 'bearer' };

/** What authenticated requests carry in `res.locals`. */
export interface AuthLocals {
  auth: Auth;
}

/**
 * Lets through a valid session cookie or `Authorization: Bearer <token>`;
 * refuses anything else: API calls with 401 JSON, page loads with a
 * redirect to the sign-in page that comes back to where they were.
 * Sessions in the second half of their life are renewed on page loads.
 * A Bearer token is a sign-in: wrong ones count against the address's
 * budget in `throttle`, and once it is spent the address gets 429 (the
 * right token too, so the answer says nothing) until the window passes.
 * A right one does not reset the count (unlike the form): scripts would
 * otherwise clear it for a guesser behind the same address all day.
 */
export function requireAuth(auth: SessionAuth, throttle: SignInThrottle, logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const header = req.get('authorization');
    if (header !== undefined) {
      const address = req.ip ?? 'unknown';
      const wait = throttle.retryAfter(address);
      if (wait > 0) {
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('Retry-After', String(wait));
        res.status(429).json({ error: 'too_many_attempts', message: `too many failed sign-ins; try again in ${wait} s` });
        return;
      }
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (match && auth.tokenMatches(match[1])) {
        (res.locals as AuthLocals).auth = { kind: 'bearer' };
        return next();
      }
      if (match) {
        throttle.failed(address);
        logger.warn({ ip: address }, 'failed sign-in (Bearer token)');
      }
      return refuse(req, res, 'the Bearer token is not the dashboard token');
    }
    const session = auth.verify(readCookie(req.get('cookie'), SESSION_COOKIE));
    if (!session) return refuse(req, res, 'sign in first (or send Authorization: Bearer <token>)');
    (res.locals as AuthLocals).auth = { kind: 'session', session };
    if (req.method === 'GET' && !req.path.startsWith('/api/') && auth.wantsRenewal(session)) {
      const renewed = auth.renew(session);
      setSessionCookie(req, res, renewed.value);
      (res.locals as AuthLocals).auth = { kind: 'session', session: renewed.session };
    }
    next();
  };
}

function refuse(req: Request, res: Response, message: string): void {
  res.setHeader('Cache-Control', 'no-store');
  if (req.path.startsWith('/api/') || req.method !== 'GET') {
    res.setHeader('WWW-Authenticate', 'Bearer realm="slipway"');
    res.status(401).json({ error: 'unauthenticated', message });
    return;
  }
  res.redirect(303, `/sign-in?next=${encodeURIComponent(req.originalUrl)}`);
}
