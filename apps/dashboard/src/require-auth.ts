import type { NextFunction, Request, Response } from 'express';
import { readCookie } from './read-cookie.js';
import { SESSION_COOKIE, type Session, type SessionAuth } from './session-auth.js';
import { setSessionCookie } from './session-cookie.js';

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
 */
export function requireAuth(auth: SessionAuth) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const header = req.get('authorization');
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (match && auth.tokenMatches(match[1])) {
        (res.locals as AuthLocals).auth = { kind: 'bearer' };
        return next();
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
