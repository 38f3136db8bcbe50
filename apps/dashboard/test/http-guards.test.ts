import { request, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SlipwayConfig } from '@slipway/config/types';
import { createDashboard, type Dashboard } from '../src/create-dashboard.js';
import { hostRules, isServedHost } from '../src/http-guards.js';
import { launchBrowser } from './browser.js';
import { dashboardWorld, fakeSha, quietLogger, type DashboardWorld } from './dashboard-world.js';
import { sseMessages } from './sse-client.js';

/** Short, so the tests are; the default is 30 s. */
const BOUND_MS = 1500;
/** Node checks its header and request timeouts this often (see serverLimits). */
const CHECK_INTERVAL_MS = 1000;
/** Timers on two shared cores fire late; a connection still open this long after the bound was not cut by it. */
const SLACK_MS = 1500;

/** What a raw connection saw: the bytes that came back and when it closed (ms after it opened), or null if still open. */
interface Dribble {
  received: string;
  closedAfterMs: number | null;
}

/**
 * Sends `head` at once, then `body` one byte every `everyMs` (slowloris),
 * and waits up to `waitMs` for the server to close the connection.
 */
async function dribble(port: number, head: string, body: string, everyMs: number, waitMs: number): Promise<Dribble> {
  const socket = connect(port, '127.0.0.1');
  const started = Date.now();
  let received = '';
  let closedAfterMs: number | null = null;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => {
    closedAfterMs = Date.now() - started;
    resolve();
  }));
  socket.write(head);
  let sent = 0;
  const timer = setInterval(() => {
    if (sent < body.length && !socket.destroyed) socket.write(body[sent++]!);
  }, everyMs);
  await Promise.race([closed, sleep(waitMs)]);
  clearInterval(timer);
  socket.destroy();
  return { received, closedAfterMs };
}

describe('request timeouts: slow clients are cut off, live streams are not', () => {
  let world: DashboardWorld;
  let dashboard: Dashboard;
  let server: Server;
  let url: string;
  let port: number;
  let bearer: Record<string, string>;
  beforeAll(async () => {
    world = await dashboardWorld();
    bearer = { authorization: `Bearer ${world.token}` };
    dashboard = createDashboard({ config: world.config, queue: world.queue, redis: world.redis, etcd: world.etcd, docker: world.docker, logger: quietLogger, requestTimeoutMs: BOUND_MS });
    server = dashboard.serve(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    port = (server.address() as AddressInfo).port;
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    dashboard?.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await world?.close();
  });

  it('closes a connection whose POST body comes one byte at a time (slowloris), on the sign-in form and on the API', async () => {
    const targets = [
      { path: '/sign-in', headers: 'Content-Type: application/x-www-form-urlencoded\r\n', body: `token=${'x'.repeat(200)}` },
      { path: '/api/deploy', headers: `Authorization: Bearer ${world.token}\r\nContent-Type: application/json\r\n`, body: JSON.stringify({ app: world.apps[0]!.name, pad: 'x'.repeat(200) }) },
    ];
    const seen = await Promise.all(targets.map(({ path, headers, body }) => dribble(port,
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${headers}Content-Length: ${body.length}\r\n\r\n`, body, 100, BOUND_MS + SLACK_MS + 3000)));
    for (const [i, { received, closedAfterMs }] of seen.entries()) {
      const what = targets[i]!.path;
      expect(closedAfterMs, `${what} still open`).not.toBeNull();
      expect(closedAfterMs!, what).toBeGreaterThanOrEqual(BOUND_MS - 50);
      expect(closedAfterMs!, what).toBeLessThan(BOUND_MS + SLACK_MS);
      expect(received, what).toMatch(/^HTTP\/1\.1 408 /);
    }
    expect((await world.queue.store.list({ limit: 5 })).length).toBe(0);
  });

  it('closes a connection whose headers come one byte at a time, before any route sees it', async () => {
    const head = `GET /sign-in HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Padding: ${'x'.repeat(200)}\r\n\r\n`;
    const { received, closedAfterMs } = await dribble(port, '', head, 100, BOUND_MS + CHECK_INTERVAL_MS + SLACK_MS + 3000);
    expect(closedAfterMs, 'still open').not.toBeNull();
    expect(closedAfterMs!).toBeLessThan(BOUND_MS + CHECK_INTERVAL_MS + SLACK_MS);
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('keeps the live streams open past the bound: job events and a running job\'s log still arrive', async () => {
    const running = await world.queue.store.create({ app: world.apps[0]!.name, sha: fakeSha(1), ref: 'master', image: null, trigger: 'cli' });
    await world.queue.store.update(running.id, { state: 'active' });
    const events = sseMessages(await fetch(`${url}/api/events`, { headers: bearer }));
    const log = sseMessages(await fetch(`${url}/api/jobs/${running.id}/log/stream`, { headers: bearer }));
    expect((await events.next()).value).toMatchObject({ event: 'ready' });
    expect((await log.next()).value).toMatchObject({ event: 'job' });

    await sleep(BOUND_MS + SLACK_MS);
    const later = await world.queue.store.create({ app: world.apps[0]!.name, sha: fakeSha(2), ref: 'master', image: null, trigger: 'cli' });
    await world.queue.store.appendLog(running.id, ['still streaming']);
    expect((await events.next()).value).toMatchObject({ event: 'job', data: expect.stringContaining(`"id":"${later.id}"`) });
    expect((await log.next()).value).toMatchObject({ id: '1', data: '"still streaming"' });
    expect(dashboard.openStreams).toBe(2);
    await events.return(undefined);
    await log.return(undefined);
  });

  it('cuts a download whose reader stopped reading, once it has made no progress for the bound', async () => {
    const job = await world.queue.store.create({ app: world.apps[0]!.name, sha: fakeSha(3), ref: 'master', image: null, trigger: 'cli' });
    await world.queue.store.finish(job.id, 'completed', {});
    const line = `${'x'.repeat(95)} ok`;
    const lineCount = 200_000;
    for (let i = 0; i < lineCount; i += 20_000) await world.queue.store.appendLog(job.id, Array.from({ length: 20_000 }, () => line));
    const total = lineCount * (line.length + 1);

    // A reader that never reads: what the server sends piles up in the socket buffers, then it can send no more.
    const socket: Socket = connect(port, '127.0.0.1');
    socket.pause();
    socket.on('error', () => {});
    let received = 0;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.write(`GET /api/jobs/${job.id}/log.txt HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${world.token}\r\nConnection: close\r\n\r\n`);
    await sleep(BOUND_MS + SLACK_MS + 1000);
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.resume();
    const closedInTime = await Promise.race([ended.then(() => true), sleep(5000).then(() => false)]);
    socket.destroy();
    expect(closedInTime).toBe(true);
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(total);
  });
});

type DashboardConfig = SlipwayConfig['dashboard'];

describe('which Host values the dashboard answers to', () => {
  const loopback: DashboardConfig = { host: '127.0.0.1', port: 3001, allowed_hosts: [] };
  const anyAddress: DashboardConfig = { host: '0.0.0.0', port: 3001, allowed_hosts: [] };
  const named: DashboardConfig = {
    host: '127.0.0.1', port: 3001, public_url: 'https://dash.example.org/slipway/', allowed_hosts: ['deploy.example.com', '*.ops.example'],
  };
  const on = (address: string) => ({ address, port: 3001 });
  const cases: Array<[string, DashboardConfig, string | undefined, { address: string; port: number }, boolean]> = [
    ['its own address and port', loopback, '127.0.0.1:3001', on('127.0.0.1'), true],
    ['localhost on a loopback bind', loopback, 'localhost:3001', on('127.0.0.1'), true],
    ['[::1] on a loopback bind', loopback, '[::1]:3001', on('127.0.0.1'), true],
    ['names are case-insensitive, a trailing dot is the same name', loopback, 'LocalHost.:3001', on('127.0.0.1'), true],
    ['a DNS-rebound name', loopback, 'evil.example:3001', on('127.0.0.1'), false],
    ['a rebound name that starts like ours', loopback, 'localhost.evil.example:3001', on('127.0.0.1'), false],
    ['its address on another port', loopback, '127.0.0.1:3002', on('127.0.0.1'), false],
    ['its address without a port (port 80)', loopback, '127.0.0.1', on('127.0.0.1'), false],
    ['no Host at all', loopback, undefined, on('127.0.0.1'), false],
    ['an empty Host', loopback, '', on('127.0.0.1'), false],
    ['garbage', loopback, 'localhost:3001:3001', on('127.0.0.1'), false],
    ['userinfo smuggled into Host', loopback, 'localhost:3001@evil.example', on('127.0.0.1'), false],
    ['a specific address does not serve localhost', { ...loopback, host: '10.1.2.3' }, 'localhost:3001', on('10.1.2.3'), false],
    ['a specific address serves itself', { ...loopback, host: '10.1.2.3' }, '10.1.2.3:3001', on('10.1.2.3'), true],
    ['a configured host name serves itself', { ...loopback, host: 'dash.lan' }, 'dash.lan:3001', on('10.1.2.3'), true],
    ['0.0.0.0 serves localhost', anyAddress, 'localhost:3001', on('127.0.0.1'), true],
    ['0.0.0.0 serves the address the client reached', anyAddress, '10.1.2.3:3001', on('10.1.2.3'), true],
    ['… also when IPv4 arrives on a dual-stack socket', { ...anyAddress, host: '::' }, '10.1.2.3:3001', on('::ffff:10.1.2.3'), true],
    ['… and an IPv6 address reached', { ...anyAddress, host: '::' }, '[fd00::5]:3001', on('fd00::5'), true],
    ['… but not an address it was not reached on', anyAddress, '10.9.9.9:3001', on('10.1.2.3'), false],
    ['0.0.0.0 refuses a rebound name', anyAddress, 'evil.example:3001', on('10.1.2.3'), false],
    ['an allowed host with no port (behind a proxy)', named, 'deploy.example.com', on('127.0.0.1'), true],
    ['an allowed host with any port', named, 'DEPLOY.example.com:8443', on('127.0.0.1'), true],
    ['a subdomain of a wildcard', named, 'a.b.ops.example', on('127.0.0.1'), true],
    ['the wildcard\'s own domain is not a subdomain', named, 'ops.example', on('127.0.0.1'), false],
    ['a name that only ends like the wildcard', named, 'evilops.example', on('127.0.0.1'), false],
    ['an allowed name as a prefix of another', named, 'deploy.example.com.evil.example', on('127.0.0.1'), false],
    ['the host of public_url', named, 'dash.example.org', on('127.0.0.1'), true],
    ['the host of public_url with a port', named, 'dash.example.org:3001', on('127.0.0.1'), true],
  ];
  it.each(cases)('%s', (_name, dashboard, host, local, served) => {
    expect(isServedHost(hostRules(dashboard), host, local)).toBe(served);
  });
});

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One request with exactly this Host header, as a browser sends it for a
 * page whose name was rebound to 127.0.0.1 (fetch() will not let a test
 * choose Host). A response still open after a second (a stream) resolves
 * with what came so far.
 */
function rawRequest(url: string, path: string, host: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: init.method ?? 'GET', headers: { ...init.headers, Host: host } }, (res) => {
      let body = '';
      const done = () => resolve({ status: res.statusCode!, headers: res.headers, body });
      const timer = setTimeout(() => {
        done();
        req.destroy();
      }, 1000);
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        clearTimeout(timer);
        done();
      });
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

describe('the Host check over HTTP (DNS rebinding)', () => {
  let world: DashboardWorld;
  let dashboard: Dashboard;
  let server: Server;
  let url: string;
  let port: number;
  beforeAll(async () => {
    world = await dashboardWorld();
    const config = { ...world.config, dashboard: { ...world.config.dashboard, public_url: 'https://dash.example.org', allowed_hosts: ['deploy.example.com', '*.ops.example'] } };
    dashboard = createDashboard({ config, queue: world.queue, redis: world.redis, etcd: world.etcd, docker: world.docker, logger: quietLogger });
    server = dashboard.serve(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    port = (server.address() as AddressInfo).port;
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    dashboard?.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await world?.close();
  });

  const bearer = () => ({ authorization: `Bearer ${world.token}` });
  const signIn = () => ({ method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: world.token }) });

  it('refuses a rebound name on every route, the sign-in, static files, the health check and the streams included: 421, nothing served', async () => {
    const evil = `evil.example:${port}`;
    const routes: Array<[string, Parameters<typeof rawRequest>[3]]> = [
      ['/', {}], ['/jobs', {}], ['/sign-in', {}], ['/sign-in', signIn()], ['/assets/styles.css', {}], ['/assets/web/boot.js', {}],
      ['/healthz', {}], ['/nowhere', {}], ['/api/jobs', { headers: bearer() }], ['/api/session', { headers: bearer() }],
      ['/api/events', { headers: bearer() }], ['/api/deploy', { method: 'POST', headers: { ...bearer(), 'Content-Type': 'application/json' }, body: '{}' }],
    ];
    for (const [path, init] of routes) {
      const what = `${init?.method ?? 'GET'} ${path}`;
      const res = await rawRequest(url, path, evil, init);
      expect(res.status, what).toBe(421);
      expect(res.headers['set-cookie'], what).toBeUndefined();
      expect(res.headers['content-type'], what).toMatch(path.startsWith('/api/') ? /^application\/json/ : /^text\/plain/);
      expect(res.body, what).toContain('evil.example');
      expect(res.body, what).toContain('dashboard.allowed_hosts');
      expect(res.body.length, what).toBeLessThan(400);
      if (path.startsWith('/api/')) expect(JSON.parse(res.body), what).toMatchObject({ error: 'misdirected_host' });
    }
    expect(dashboard.openStreams).toBe(0);
  });

  it('serves its own address, localhost, the allowed hosts (any port) and the host of public_url', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'deploy.example.com', `deploy.example.com:${port}`, 'a.ops.example', 'dash.example.org']) {
      expect((await rawRequest(url, '/healthz', host)).status, host).toBe(200);
      expect((await rawRequest(url, '/sign-in', host)).body, host).toContain('Dashboard token');
      expect((await rawRequest(url, '/api/jobs', host, { headers: bearer() })).status, host).toBe(200);
    }
    const signedIn = await rawRequest(url, '/sign-in', 'deploy.example.com', signIn());
    expect(signedIn.status).toBe(200);
    expect(String(signedIn.headers['set-cookie'])).toMatch(/^slipway_session=/);
  });

  it('a page in a DNS-rebound origin, in a real browser, gets nothing from the dashboard', async () => {
    const browser = await launchBrowser({ args: ['--host-resolver-rules=MAP evil.example 127.0.0.1'] });
    try {
      const context = await browser.newContext();
      const page = await context.newPage();
      const origin = `http://evil.example:${port}`;
      // Loaded while evil.example points at 127.0.0.1: the dashboard must not serve it...
      const navigation = await page.goto(`${origin}/sign-in`);
      expect(navigation?.status()).toBe(421);
      expect(await page.locator('input').count()).toBe(0);
      // ...and a script in that origin (same-origin requests, as after a rebinding) gets nothing either.
      const seen = await page.evaluate(async (token) => {
        const results: Record<string, { status: number; body: string }> = {};
        for (const [name, path, init] of [
          ['health', '/healthz', {}],
          ['sign-in page', '/sign-in', {}],
          ['guess', '/sign-in', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: 'guess' }) }],
          ['jobs', '/api/jobs', { headers: { authorization: `Bearer ${token}` } }],
        ] as Array<[string, string, RequestInit]>) {
          const res = await fetch(path, init);
          results[name] = { status: res.status, body: await res.text() };
        }
        return results;
      }, world.token);
      for (const [name, { status, body }] of Object.entries(seen)) {
        expect(status, name).toBe(421);
        expect(body, name).not.toContain('Dashboard token');
        expect(body, name).not.toContain('"jobs"');
      }
    } finally {
      await browser.close();
    }
  });
});
