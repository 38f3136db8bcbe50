import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import express, { Router, type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '@slipway/core/logger';
import { signInPage } from './pages.js';

// Who may use the dashboard: whoever holds `dashboard.token`, sent as
// `Authorization: Bearer` by scripts or exchanged at the sign-in form for a
// session cookie by browsers. Requests carrying the cookie must also prove
// they come from our own pages (CSRF), and guessing the token is throttled.

/** How long a sign-in lasts without use; any page load in the second half renews it. */
export const SESSION_TTL_S = 12 * 3600;
/** Name of the session cookie. */
export const SESSION_COOKIE = 'slipway_session';
/** Failed sign-ins (form or Bearer) allowed per address within {@link SIGN_IN_WINDOW_S} before answering 429. */
export const MAX_FAILED_SIGN_INS = 10;
export const SIGN_IN_WINDOW_S = 300;
/** Addresses the throttle remembers at most, so a flood of addresses cannot grow memory without bound. */
const MAX_TRACKED = 10_000;
/** Header our pages send the CSRF token in. */
export const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** A verified session: its id, when it ends, and the CSRF token bound to it. */
export interface Session {
  id: string;
  /** Unix seconds. */
  expiresAt: number;
  csrf: string;
}

/** Who a request is: a signed-in browser, or a client with the token as a Bearer. */
export type Auth = { kind: 'session'; session: Session } | { kind: 'bearer' };

/** What authenticated requests carry in `res.locals`. */
export interface AuthLocals {
  auth: Auth;
}

/**
 * Stateless sessions signed with a key derived from the dashboard token.
 * The cookie is `v1.<random id>.<expiry>.<HMAC>`: nothing to store, it
 * survives a restart, and changing the token signs everybody out. The CSRF
 * token is another HMAC of the session id, so it needs no storage either.
 * Signing out revokes the id in memory until every copy of it would have
 * expired anyway.
 */
export class SessionAuth {
  private readonly key: Buffer;
  private readonly tokenDigest: Buffer;
  private readonly revoked = new Map<string, number>();
  /** What to call when a session is signed out: the streams it holds open. */
  private readonly watchers = new Map<string, Set<() => void>>();

  constructor(token: string, private readonly now: () => number = () => Math.floor(Date.now() / 1000)) {
    this.key = createHmac('sha256', token).update('slipway-dashboard-session-v1').digest();
    this.tokenDigest = sha256(token);
  }

  /** Constant-time comparison with the configured token (digests, so lengths never leak). */
  tokenMatches(candidate: unknown): boolean {
    if (typeof candidate !== 'string' || candidate.length === 0 || candidate.length > 4096) return false;
    return timingSafeEqual(sha256(candidate), this.tokenDigest);
  }

  /** A new session and the cookie value that carries it. */
  issue(): { session: Session; value: string } {
    return this.sign(randomBytes(18).toString('base64url'), this.now() + SESSION_TTL_S);
  }

  /** The same session with a fresh expiry (sliding sessions). */
  renew(session: Session): { session: Session; value: string } {
    return this.sign(session.id, this.now() + SESSION_TTL_S);
  }

  /** Whether a session is in the second half of its life and worth renewing. */
  wantsRenewal(session: Session): boolean {
    return session.expiresAt - this.now() < SESSION_TTL_S / 2;
  }

  /** The session a cookie value carries, or null if forged, expired or signed out. */
  verify(value: string | undefined): Session | null {
    if (!value || value.length > 200) return null;
    const parts = value.split('.');
    if (parts.length !== 4 || parts[0] !== 'v1') return null;
    const [, id, exp, mac] = parts as [string, string, string, string];
    const expected = this.mac(`v1.${id}.${exp}`);
    const given = Buffer.from(mac, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const expiresAt = Number(exp);
    if (!Number.isInteger(expiresAt) || expiresAt <= this.now()) return null;
    if (this.revoked.has(id)) return null;
    return { id, expiresAt, csrf: this.csrfFor(id) };
  }

  /** Whether `candidate` is the CSRF token of `session` (constant time). */
  csrfMatches(session: Session, candidate: unknown): boolean {
    if (typeof candidate !== 'string') return false;
    const given = Buffer.from(candidate);
    const expected = Buffer.from(session.csrf);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /**
   * Signs a session out for good (this process; a restart forgets, the expiry still holds).
   * Kept until the latest expiry any copy of its cookie can carry, not the one presented:
   * a copy renewed after this one (a stolen cookie, another tab) expires up to a whole
   * lifetime from now, and none can be renewed once the id is revoked.
   */
  revoke(session: Session): void {
    const now = this.now();
    for (const [id, until] of this.revoked) if (until <= now) this.revoked.delete(id);
    this.revoked.set(session.id, now + SESSION_TTL_S);
    for (const ended of this.watchers.get(session.id) ?? []) ended();
    this.watchers.delete(session.id);
  }

  /**
   * Calls `ended` once the session ends: signed out (any copy of it), or
   * past the expiry it was verified with. For what a request holds open
   * (a stream), which no later request would check. Returns the unwatch.
   */
  watch(session: Session, ended: () => void): () => void {
    let watchers = this.watchers.get(session.id);
    if (!watchers) this.watchers.set(session.id, (watchers = new Set()));
    const once = () => {
      unwatch();
      ended();
    };
    const expiry = setTimeout(once, Math.max(0, session.expiresAt - this.now()) * 1000).unref();
    watchers.add(once);
    const unwatch = () => {
      clearTimeout(expiry);
      watchers.delete(once);
      if (watchers.size === 0 && this.watchers.get(session.id) === watchers) this.watchers.delete(session.id);
    };
    return unwatch;
  }

  /** Streams watched right now, over every session. */
  get watching(): number {
    let count = 0;
    for (const watchers of this.watchers.values()) count += watchers.size;
    return count;
  }

  private sign(id: string, expiresAt: number): { session: Session; value: string } {
    const payload = `v1.${id}.${expiresAt}`;
    return { session: { id, expiresAt, csrf: this.csrfFor(id) }, value: `${payload}.${this.mac(payload).toString('base64url')}` };
  }

  private csrfFor(id: string): string {
    return this.mac(`csrf.${id}`).toString('base64url');
  }

  private mac(text: string): Buffer {
    return createHmac('sha256', this.key).update(text).digest();
  }
}

/**
 * Slows down token guessing: per client address, a fixed window of failed
 * attempts. One instance serves the sign-in form and `Authorization:
 * Bearer` alike, so the API is no faster a way to guess.
 */
export class SignInThrottle {
  private readonly failures = new Map<string, { count: number; until: number }>();

  constructor(private readonly now: () => number = () => Date.now()) {}

  /** Seconds to wait before trying again, or 0 when an attempt is allowed now. */
  retryAfter(address: string): number {
    const entry = this.failures.get(address);
    if (!entry || entry.until <= this.now()) return 0;
    return entry.count >= MAX_FAILED_SIGN_INS ? Math.ceil((entry.until - this.now()) / 1000) : 0;
  }

  failed(address: string): void {
    const now = this.now();
    const entry = this.failures.get(address);
    if (entry && entry.until > now) {
      entry.count += 1;
      return;
    }
    if (this.failures.size >= MAX_TRACKED) {
      for (const [key, value] of this.failures) if (value.until <= now) this.failures.delete(key);
      if (this.failures.size >= MAX_TRACKED) this.failures.delete(this.failures.keys().next().value!);
    }
    this.failures.set(address, { count: 1, until: now + SIGN_IN_WINDOW_S * 1000 });
  }

  succeeded(address: string): void {
    this.failures.delete(address);
  }
}

/**
 * Lets through a valid session cookie or `Authorization: Bearer <token>`
 * (an Authorization header of another scheme is not ours, and is ignored);
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
    // Only a Bearer header is ours: a proxy in front may add its own (Basic) to every request, signed-in browsers' too.
    const header = req.get('authorization');
    if (header !== undefined && /^\s*bearer(\s|$)/i.test(header)) {
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

/**
 * Whether a browser says this request comes from our own pages. Modern
 * browsers send `Sec-Fetch-Site`, which page scripts cannot forge: it must
 * be `same-origin`. Without it (older browsers) the `Origin` header, when
 * present, must be ours. A client sending neither (curl, a script with a
 * Bearer token) is not a browser a forged page could drive, so it passes.
 */
function isSameOrigin(req: Request): boolean {
  const site = req.get('sec-fetch-site');
  if (site !== undefined) return site === 'same-origin';
  const origin = req.get('origin');
  if (origin === undefined) return true;
  const host = req.get('host');
  return origin !== 'null' && host !== undefined && origin.toLowerCase() === `${req.protocol}://${host}`.toLowerCase();
}

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

/** Where to go after signing in: a path on this site only (never `//evil` or `https://…`), else `/`. */
export function safeNext(value: unknown): string {
  if (typeof value !== 'string' || value.length > 2000) return '/';
  if (!value.startsWith('/') || value.startsWith('//') || value.startsWith('/\\')) return '/';
  if (/[\u0000-\u001f\u007f\\]/.test(value)) return '/';
  if (value.startsWith('/sign-in') || value.startsWith('/sign-out')) return '/';
  return value;
}

/** The value of cookie `name` in a Cookie header, or undefined. Not decoded: our values are URL-safe. */
function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Sets (or, with null, clears) the session cookie: HttpOnly, SameSite=Strict,
 * the whole site, and Secure whenever the request came over HTTPS (directly
 * or through a proxy on loopback).
 */
function setSessionCookie(req: Request, res: Response, value: string | null): void {
  const options = { httpOnly: true, sameSite: 'strict' as const, secure: req.secure, path: '/' };
  if (value === null) res.clearCookie(SESSION_COOKIE, options);
  else res.cookie(SESSION_COOKIE, value, { ...options, maxAge: SESSION_TTL_S * 1000 });
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
