import { describe, expect, it } from 'vitest';
import { safeNext } from '../src/safe-next.js';
import { SESSION_TTL_S, SessionAuth } from '../src/session-auth.js';
import { SignInThrottle } from '../src/sign-in-throttle.js';

describe('SessionAuth', () => {
  it('issues sessions that verify, expire, renew, and die with a changed token or a sign-out', () => {
    let now = 1_000_000;
    const auth = new SessionAuth('s3cret-token', () => now);
    const { session, value } = auth.issue();
    expect(auth.verify(value)).toEqual(session);
    expect(value).not.toContain('s3cret');
    expect(new SessionAuth('other-token', () => now).verify(value)).toBeNull();
    expect(auth.wantsRenewal(session)).toBe(false);
    now += SESSION_TTL_S * 0.6;
    expect(auth.wantsRenewal(session)).toBe(true);
    const renewed = auth.renew(session);
    expect(renewed.session.id).toBe(session.id);
    expect(renewed.session.csrf).toBe(session.csrf);
    now += SESSION_TTL_S * 0.5;
    expect(auth.verify(value)).toBeNull();
    expect(auth.verify(renewed.value)).not.toBeNull();
    auth.revoke(renewed.session);
    expect(auth.verify(renewed.value)).toBeNull();
  });

  it('compares tokens and CSRF tokens exactly', () => {
    const auth = new SessionAuth('token-1');
    expect(auth.tokenMatches('token-1')).toBe(true);
    for (const wrong of ['token-2', 'token-1 ', '', undefined, 42, 'x'.repeat(5000)]) expect(auth.tokenMatches(wrong)).toBe(false);
    const { session } = auth.issue();
    expect(auth.csrfMatches(session, session.csrf)).toBe(true);
    expect(auth.csrfMatches(session, auth.issue().session.csrf)).toBe(false);
    expect(auth.csrfMatches(session, undefined)).toBe(false);
  });
});

describe('safeNext', () => {
  it.each([
    ['/jobs?app=a', '/jobs?app=a'], ['/jobs/12#L5', '/jobs/12#L5'], ['//evil.example', '/'], ['https://evil.example', '/'],
    ['/\\evil.example', '/'], ['javascript:alert(1)', '/'], ['/sign-in?next=/', '/'], ['/a\nb', '/'], [undefined, '/'], [['/x'], '/'],
  ])('%j → %j', (input, expected) => {
    expect(safeNext(input)).toBe(expected);
  });
});

describe('SignInThrottle', () => {
  it('blocks an address after 10 failures for the rest of the window; success clears it', () => {
    let now = 0;
    const throttle = new SignInThrottle(() => now);
    for (let i = 0; i < 10; i++) {
      expect(throttle.retryAfter('a')).toBe(0);
      throttle.failed('a');
    }
    expect(throttle.retryAfter('a')).toBe(300);
    expect(throttle.retryAfter('b')).toBe(0);
    now += 301_000;
    expect(throttle.retryAfter('a')).toBe(0);
    throttle.failed('a');
    throttle.succeeded('a');
    expect(throttle.retryAfter('a')).toBe(0);
  });
});
