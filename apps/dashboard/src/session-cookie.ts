import type { Request, Response } from 'express';
import { SESSION_COOKIE, SESSION_TTL_S } from './session-auth.js';

/**
 * Sets (or, with null, clears) the session cookie: HttpOnly, SameSite=Strict,
 * the whole site, and Secure whenever the request came over HTTPS (directly
 * or through a proxy on loopback).
 */
export function setSessionCookie(req: Request, res: Response, value: string | null): void {
  const options = { httpOnly: true, sameSite: 'strict' as const, secure: req.secure, path: '/' };
  if (value === null) res.clearCookie(SESSION_COOKIE, options);
  else res.cookie(SESSION_COOKIE, value, { ...options, maxAge: SESSION_TTL_S * 1000 });
}
