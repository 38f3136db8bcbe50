import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** How long a sign-in lasts without use; any page load in the second half renews it. */
export const SESSION_TTL_S = 12 * 3600;
/** Name of the session cookie. */
export const SESSION_COOKIE = 'slipway_session';

/** A verified session: its id, when it ends, and the CSRF token bound to it. */
export interface Session {
  id: string;
  /** Unix seconds. */
  expiresAt: number;
  csrf: string;
}

/**
 * Stateless sessions signed with a key derived from the dashboard token.
 * The cookie is `v1.<random id>.<expiry>.<HMAC>`: nothing to store, it
 * survives a restart, and changing the token signs everybody out. The CSRF
 * token is another HMAC of the session id, so it needs no storage either.
 * Signing out revokes the id in memory until it would have expired anyway.
 */
export class SessionAuth {
  private readonly key: Buffer;
  private readonly tokenDigest: Buffer;
  private readonly revoked = new Map<string, number>();

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

  /** Signs a session out for good (this process; a restart forgets, the expiry still holds). */
  revoke(session: Session): void {
    const now = this.now();
    for (const [id, until] of this.revoked) if (until <= now) this.revoked.delete(id);
    this.revoked.set(session.id, session.expiresAt);
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

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
