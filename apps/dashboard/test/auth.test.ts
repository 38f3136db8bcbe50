import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { SESSION_TTL_S, SessionAuth, SignInThrottle, safeNext } from '../src/auth.js';
import { createDashboard, MissingTokenError } from '../src/create-dashboard.js';
import { dashboardWorld, leaveLogStreamDuringFirstRead, quietLogger, type DashboardWorld } from './dashboard-world.js';

/** Requests as a browser on our own pages sends them (no redirects followed). */
const get = (url: string, headers: Record<string, string> = {}) => fetch(url, { headers, redirect: 'manual' });

describe('sign-in, sessions and CSRF', () => {
  let world: DashboardWorld;
  beforeAll(async () => {
    world = await dashboardWorld();
  });
  afterAll(async () => {
    await world?.close();
  });

  const signIn = async (token = world.token, headers: Record<string, string> = {}) => fetch(`${world.url}/sign-in`, {
    method: 'POST', redirect: 'manual',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: world.url, 'Sec-Fetch-Site': 'same-origin', ...headers },
    body: new URLSearchParams({ token, next: '/jobs?app=x' }),
  });
  const cookieOf = (res: Response) => res.headers.get('set-cookie')!.split(';')[0]!;
  const csrfOf = async (cookie: string) => ((await (await get(`${world.url}/api/session`, { cookie })).json()) as { csrf: string }).csrf;

  it('refuses to be created without a token', () => {
    const config = { ...world.config, dashboard: { host: '127.0.0.1', port: 3001, allowed_hosts: [] } };
    expect(() => createDashboard({ config, queue: world.queue, redis: world.redis, etcd: world.etcd, docker: new Docker(), logger: quietLogger }))
      .toThrow(MissingTokenError);
  });

  it('refuses every page and API call without a session: pages go to sign-in, the API answers 401', async () => {
    for (const path of ['/', '/jobs?state=failed', '/jobs/1']) {
      const res = await get(`${world.url}${path}`);
      expect(res.status, path).toBe(303);
      expect(res.headers.get('location')).toBe(`/sign-in?next=${encodeURIComponent(path)}`);
    }
    for (const path of ['/api/jobs', '/api/apps', '/api/jobs/1', '/api/jobs/1/log', '/api/jobs/1/log.txt', '/api/jobs/1/log/stream', '/api/events', '/api/session']) {
      const res = await get(`${world.url}${path}`);
      expect(res.status, path).toBe(401);
      expect(await res.json()).toMatchObject({ error: 'unauthenticated' });
    }
    const post = await fetch(`${world.url}/api/deploy`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    expect(post.status).toBe(401);
    // What needs no session: the sign-in page, its stylesheet and scripts, the health check.
    expect((await get(`${world.url}/sign-in`)).status).toBe(200);
    expect((await get(`${world.url}/assets/styles.css`)).status).toBe(200);
    expect((await get(`${world.url}/assets/web/boot.js`)).status).toBe(200);
    expect(await (await get(`${world.url}/healthz`)).json()).toEqual({ status: 'ok' });
  });

  it('signs in with the token: an HttpOnly, SameSite=Strict session cookie, back to where the user was going', async () => {
    const res = await signIn();
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/jobs?app=x');
    const setCookie = res.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^slipway_session=v1\./);
    expect(setCookie).toMatch(/HttpOnly/i);
    expect(setCookie).toMatch(/SameSite=Strict/i);
    expect(setCookie).toMatch(/Path=\//);
    expect(setCookie).not.toContain(world.token);
    const page = await get(`${world.url}/`, { cookie: cookieOf(res) });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).toContain('<meta name="csrf-token" content="');
    expect(html).not.toContain(world.token);
  });

  it('refuses a wrong token, a forged or tampered cookie, and sign-in posted from another site', async () => {
    const wrong = await signIn('not-the-token');
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    expect(await wrong.text()).toContain('That token is not the dashboard token.');

    const cookie = cookieOf(await signIn());
    const [name, value] = cookie.split('=') as [string, string];
    const parts = value.split('.');
    const later = `${name}=${[parts[0], parts[1], String(Number(parts[2]) + 3600), parts[3]].join('.')}`;
    const otherId = `${name}=${[parts[0], 'A'.repeat(24), parts[2], parts[3]].join('.')}`;
    for (const forged of [later, otherId, `${name}=v1.x.9999999999.AAAA`, `${name}=`]) {
      expect((await get(`${world.url}/api/jobs`, { cookie: forged })).status, forged).toBe(401);
    }

    const crossSite = await signIn(world.token, { Origin: 'https://evil.example', 'Sec-Fetch-Site': 'cross-site' });
    expect(crossSite.status).toBe(403);
    expect(crossSite.headers.get('set-cookie')).toBeNull();
  });

  it('never redirects off-site after sign-in', async () => {
    for (const next of ['//evil.example/', 'https://evil.example/', '/\\evil.example']) {
      const res = await fetch(`${world.url}/sign-in`, {
        method: 'POST', redirect: 'manual', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: world.token, next }),
      });
      expect(res.headers.get('location'), next).toBe('/');
    }
  });

  it('takes the token as a Bearer on the API, and refuses a wrong one', async () => {
    const ok = await get(`${world.url}/api/jobs`, { authorization: `Bearer ${world.token}` });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ jobs: [], next: null });
    expect((await get(`${world.url}/api/jobs`, { authorization: 'Bearer nope' })).status).toBe(401);
    expect((await get(`${world.url}/api/jobs`, { authorization: `Basic ${world.token}` })).status).toBe(401);
    // Another scheme is a proxy's in front, not a sign-in: a signed-in browser behind it still gets in.
    const cookie = cookieOf(await signIn());
    expect((await get(`${world.url}/api/jobs`, { authorization: 'Basic b3BlcmF0b3I6cHJveHk=', cookie })).status).toBe(200);
    expect((await get(`${world.url}/`, { authorization: 'Basic b3BlcmF0b3I6cHJveHk=', cookie })).status).toBe(200);
    // A Bearer request carries no ambient credential: no CSRF token needed.
    const retry = await fetch(`${world.url}/api/jobs/999999/retry`, { method: 'POST', headers: { authorization: `Bearer ${world.token}` } });
    expect(retry.status).toBe(404);
    expect(await retry.json()).toMatchObject({ error: 'unknown_job' });
  });

  it('refuses a state-changing request with the cookie but without the CSRF token or from another origin', async () => {
    const cookie = cookieOf(await signIn());
    const csrf = await csrfOf(cookie);
    const failed = await world.queue.store.create({ app: world.apps[0]!.name, sha: null, ref: null, image: 'busybox:1', trigger: 'cli' });
    await world.queue.store.finish(failed.id, 'failed', { error: 'boom' });
    const post = (headers: Record<string, string>) => fetch(`${world.url}/api/jobs/${failed.id}/retry`, { method: 'POST', headers: { cookie, ...headers } });

    expect((await post({})).status).toBe(403);
    expect((await post({ 'X-CSRF-Token': 'x'.repeat(csrf.length) })).status).toBe(403);
    expect((await post({ 'X-CSRF-Token': csrf, Origin: 'https://evil.example' })).status).toBe(403);
    expect((await post({ 'X-CSRF-Token': csrf, Origin: 'null' })).status).toBe(403);
    expect((await post({ 'X-CSRF-Token': csrf, 'Sec-Fetch-Site': 'same-site' })).status).toBe(403);
    expect((await post({ 'X-CSRF-Token': csrf, 'Sec-Fetch-Site': 'cross-site', Origin: world.url })).status).toBe(403);
    // Another session's token does not fit this one.
    const otherCsrf = await csrfOf(cookieOf(await signIn()));
    expect((await post({ 'X-CSRF-Token': otherCsrf })).status).toBe(403);
    expect((await world.queue.store.mustGet(failed.id)).retriedBy).toBeNull();

    const ok = await post({ 'X-CSRF-Token': csrf, Origin: world.url, 'Sec-Fetch-Site': 'same-origin' });
    expect(ok.status).toBe(201);
    const { job } = (await ok.json()) as { job: { id: string; retryOf: string; trigger: string } };
    expect(job).toMatchObject({ retryOf: failed.id, trigger: 'retry' });
  });

  it('signs out for good: the old cookie no longer works, and the streams it holds open end', async () => {
    const cookie = cookieOf(await signIn());
    const csrf = await csrfOf(cookie);
    const events = await fetch(`${world.url}/api/events`, { headers: { cookie } });
    expect(events.status).toBe(200);
    const ended = (async () => {
      const reader = events.body!.getReader();
      while (!(await reader.read()).done);
      return true;
    })();
    const out = await fetch(`${world.url}/sign-out`, {
      method: 'POST', redirect: 'manual',
      headers: { cookie, 'Content-Type': 'application/x-www-form-urlencoded', Origin: world.url },
      body: new URLSearchParams({ _csrf: csrf }),
    });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toMatch(/slipway_session=;/);
    expect((await get(`${world.url}/api/jobs`, { cookie })).status).toBe(401);
    expect(await Promise.race([ended, new Promise((r) => setTimeout(() => r('still open'), 3000))])).toBe(true);
  });

  it('forgets a stream whose client left while the job was being read: nothing stays bound to the session', async () => {
    const cookie = cookieOf(await signIn());
    const job = await world.queue.store.create({ app: world.apps[0]!.name, sha: 'a'.repeat(40), ref: 'master', image: null, trigger: 'cli' });
    await world.queue.store.update(job.id, { state: 'active' });
    const before = { open: world.dashboard.openStreams, bound: world.dashboard.sessionStreams };
    await leaveLogStreamDuringFirstRead(world, job.id, { cookie });
    expect(world.dashboard.openStreams).toBe(before.open);
    expect(world.dashboard.sessionStreams).toBe(before.bound);
  });

  /** A dashboard of its own, so the other tests' sign-ins do not count against its throttle. */
  const freshDashboard = async () => {
    const other = createDashboard({ config: world.config, queue: world.queue, redis: world.redis, etcd: world.etcd, docker: world.docker, logger: quietLogger });
    const server = other.serve(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    return {
      url,
      form: (token: string) => fetch(`${url}/sign-in`, { method: 'POST', redirect: 'manual', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) }),
      bearer: (token: string) => fetch(`${url}/api/jobs`, { headers: { authorization: `Bearer ${token}` } }),
      async close() {
        other.close();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  };

  it('slows down token guessing: after 10 failures from an address, 429 even for the right token', async () => {
    const other = await freshDashboard();
    try {
      for (let i = 0; i < 10; i++) expect((await other.form(`guess-${i}`)).status).toBe(401);
      const blocked = await other.form(world.token);
      expect(blocked.status).toBe(429);
      expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      await other.close();
    }
  });

  it('slows down token guessing over the API too: 10 wrong Bearer tokens, then 429 with Retry-After even for the right one', async () => {
    const other = await freshDashboard();
    try {
      const signedIn = (await other.form(world.token)).headers.get('set-cookie')!.split(';')[0]!;
      for (let i = 0; i < 10; i++) expect((await other.bearer(`guess-${i}`)).status).toBe(401);
      for (const token of ['guess-10', world.token]) {
        const blocked = await other.bearer(token);
        expect(blocked.status, token).toBe(429);
        expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
        expect(await blocked.json()).toMatchObject({ error: 'too_many_attempts' });
      }
      // The form is closed to this address as well; a session signed in before the guessing still works.
      expect((await other.form(world.token)).status).toBe(429);
      expect((await fetch(`${other.url}/api/jobs`, { headers: { cookie: signedIn } })).status).toBe(200);
    } finally {
      await other.close();
    }
  });

  it('counts failed sign-ins and failed Bearer tokens against one budget per address', async () => {
    const other = await freshDashboard();
    try {
      for (let i = 0; i < 5; i++) expect((await other.form(`guess-${i}`)).status).toBe(401);
      for (let i = 5; i < 10; i++) expect((await other.bearer(`guess-${i}`)).status).toBe(401);
      expect((await other.bearer(world.token)).status).toBe(429);
      expect((await other.form(world.token)).status).toBe(429);
    } finally {
      await other.close();
    }
  });
});

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

  it('keeps a signed-out session out until every copy of its cookie has expired', () => {
    let now = 1_000_000;
    const auth = new SessionAuth('s3cret-token', () => now);
    const { session, value } = auth.issue();
    now += SESSION_TTL_S * 0.6;
    // A copy renewed elsewhere (a stolen cookie, another tab) outlives the one signed out with.
    const copy = auth.renew(session);
    auth.revoke(session);
    expect(auth.verify(value)).toBeNull();
    expect(auth.verify(copy.value)).toBeNull();
    // Past the signed-out cookie's expiry, when a later sign-out sweeps the list, the copy stays out.
    now += SESSION_TTL_S * 0.5;
    auth.revoke(auth.issue().session);
    expect(auth.verify(copy.value)).toBeNull();
    now = copy.session.expiresAt - 1;
    expect(auth.verify(copy.value)).toBeNull();
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
