import express, { Router, type Request, type Response } from 'express';
import type { Logger } from '@slipway/core/logger';
import { csrfGuard } from './csrf-guard.js';
import { readCookie } from './read-cookie.js';
import { requireAuth, type AuthLocals } from './require-auth.js';
import { safeNext } from './safe-next.js';
import { isSameOrigin } from './same-origin.js';
import { SESSION_COOKIE, type SessionAuth } from './session-auth.js';
import { setSessionCookie } from './session-cookie.js';
import { signInPage } from './sign-in-page.js';
import type { SignInThrottle } from './sign-in-throttle.js';

/**
 * `GET /sign-in` (the form), `POST /sign-in` (token → session cookie, then
 * back to `next`), `POST /sign-out`. Sign-in also accepts JSON
 * `{token}` and answers `{csrf}` for scripts that want a session.
 * `throttle` is shared with the Bearer check: one budget per address.
 */
export function signInRoutes(auth: SessionAuth, throttle: SignInThrottle, logger: Logger): Router {
  const router = Router();
  const forms = [express.urlencoded({ extended: false, limit: '8kb' }), express.json({ limit: '8kb' })];

  router.get('/sign-in', (req: Request, res: Response) => {
    const next = safeNext(req.query.next);
    res.setHeader('Cache-Control', 'no-store');
    if (auth.verify(readCookie(req.get('cookie'), SESSION_COOKIE))) return res.redirect(303, next);
    res.type('html').send(signInPage({ next }));
  });

  router.post('/sign-in', ...forms, (req: Request, res: Response) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const next = safeNext(body.next);
    const json = Boolean(req.is('application/json'));
    const address = req.ip ?? 'unknown';
    res.setHeader('Cache-Control', 'no-store');
    const wait = throttle.retryAfter(address);
    if (wait > 0) {
      res.setHeader('Retry-After', String(wait));
      return answer(429, 'too_many_attempts', `too many failed sign-ins; try again in ${wait} s`);
    }
    if (!isSameOrigin(req)) return answer(403, 'csrf', 'sign-in from another site refused');
    if (!auth.tokenMatches(body.token)) {
      throttle.failed(address);
      logger.warn({ ip: address }, 'failed sign-in');
      return answer(401, 'bad_token', 'That token is not the dashboard token.');
    }
    throttle.succeeded(address);
    const { session, value } = auth.issue();
    setSessionCookie(req, res, value);
    logger.info({ ip: address }, 'signed in');
    if (json) return res.status(200).json({ csrf: session.csrf, expiresAt: new Date(session.expiresAt * 1000).toISOString() });
    res.redirect(303, next);

    function answer(status: number, code: string, message: string) {
      if (json) return res.status(status).json({ error: code, message });
      res.status(status).type('html').send(signInPage({ next, error: message }));
    }
  });

  router.post('/sign-out', ...forms, requireAuth(auth, throttle, logger), csrfGuard(auth), (req: Request, res: Response) => {
    const who = (res.locals as AuthLocals).auth;
    if (who.kind === 'session') auth.revoke(who.session);
    setSessionCookie(req, res, null);
    res.setHeader('Cache-Control', 'no-store');
    res.redirect(303, '/sign-in');
  });

  return router;
}
