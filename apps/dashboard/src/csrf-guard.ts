import type { NextFunction, Request, Response } from 'express';
import type { AuthLocals } from './require-auth.js';
import type { SessionAuth } from './session-auth.js';
import { isSameOrigin } from './same-origin.js';

/** Header our pages send the CSRF token in. */
export const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Guards state-changing requests made with the session cookie: the browser
 * must say it comes from our own origin (Sec-Fetch-Site / Origin), and the
 * request must carry the session's CSRF token (header, or `_csrf` in a
 * form). A Bearer request carries no ambient credential, so it needs neither.
 */
export function csrfGuard(auth: SessionAuth) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (SAFE_METHODS.has(req.method)) return next();
    const who = (res.locals as AuthLocals).auth;
    if (who.kind === 'bearer') return next();
    const candidate = req.get(CSRF_HEADER) ?? (req.body as Record<string, unknown> | undefined)?._csrf;
    if (!isSameOrigin(req) || !auth.csrfMatches(who.session, candidate)) {
      res.status(403).json({ error: 'csrf', message: 'cross-site request refused: reload the page and try again' });
      return;
    }
    next();
  };
}
