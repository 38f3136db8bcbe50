import type { Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDashboard, type Dashboard } from '../src/create-dashboard.js';
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
