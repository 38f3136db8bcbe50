import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SlipwayConfig } from '@slipway/config/types';
import { createDashboard, type Dashboard } from '../src/create-dashboard.js';
import { hostRules, isServedHost } from '../src/host-check.js';
import { launchBrowser } from './browser.js';
import { dashboardWorld, quietLogger, type DashboardWorld } from './dashboard-world.js';

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
      ['/', {}], ['/jobs', {}], ['/sign-in', {}], ['/sign-in', signIn()], ['/assets/styles.css', {}], ['/assets/web/main.js', {}],
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
