import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, githubSignature, type RedisService, startRedis, stopProcess, tempDir, waitFor } from '@slipway/devstack/testing';
import { githubBranchPush, SECRETS, TEST_APPS } from './fixtures.js';
import { startReceiver, type TestReceiver } from './start-receiver.js';
import { QUEUE_TIMEOUT_MS } from '../src/create-receiver.js';

// A Redis of our own, to stop and start again; the shared one is never touched.
const dir = tempDir('slipway-receiver-redis-');
let port: number;
let redis: RedisService;
let r: TestReceiver;

beforeAll(async () => {
  port = await freePort();
  redis = await startRedis(join(dir.path, 'redis'), port);
  r = await startReceiver({ redisUrl: redis.url, apps: TEST_APPS });
});
afterAll(async () => {
  await r.close();
  await stopProcess(redis.pid);
  dir.remove();
});

const body = JSON.stringify(githubBranchPush());
async function push(delivery: string, payload = body) {
  const started = Date.now();
  const res = await fetch(`${r.url}/hooks/github`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': delivery, 'x-hub-signature-256': githubSignature(payload, SECRETS.hello) },
    body: payload,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, ms: Date.now() - started, retryAfter: res.headers.get('retry-after') };
}
const health = async () => (await fetch(`${r.url}/healthz`, { signal: AbortSignal.timeout(10_000) })).status;

describe('Redis going away and coming back', () => {
  it('503 at once while Redis is down, 202 again once it is back, without a restart', async () => {
    // An earlier commit (the one retried below must be new to the receiver, which remembers pushed commits).
    expect((await push(randomUUID(), JSON.stringify({ ...githubBranchPush(), after: 'e'.repeat(40) }))).status).toBe(202);
    expect(await health()).toBe(200);

    await stopProcess(redis.pid);
    const delivery = randomUUID();
    const down = await push(delivery);
    expect(down).toMatchObject({ status: 503, body: { error: 'unavailable' }, retryAfter: '5' });
    expect(down.ms).toBeLessThan(1000);
    const started = Date.now();
    expect(await health()).toBe(503);
    expect(Date.now() - started).toBeLessThan(1500);
    // Still refusing quickly a while later, with ioredis reconnecting in the background.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const stillDown = await push(delivery);
    expect(stillDown.status).toBe(503);
    expect(stillDown.ms).toBeLessThan(1000);

    redis = await startRedis(join(dir.path, 'redis'), port);
    await waitFor('the receiver to see Redis again', async () => (await health()) === 200, { timeoutMs: 15_000 });
    // The forge retries the delivery that got 503: it was never claimed, so it queues now.
    const back = await push(delivery);
    expect(back.status).toBe(202);
    expect(await r.queue.store.get(back.body.job as string)).toMatchObject({ app: 'hello', trigger: 'webhook' });
    expect((await push(delivery)).status).toBe(200);
  });
});

describe('a Redis that refuses writes for a while (out of memory)', () => {
  it('is answered 503 like an unreachable one, and what the receiver logs holds none of the refused command\'s arguments', async () => {
    const admin = r.redis.duplicate();
    await new Promise((resolve) => admin.once('ready', resolve));
    await admin.config('SET', 'maxmemory', '1');
    try {
      // The commit's message goes into its job record, never into a log line.
      const payload = githubBranchPush();
      const message = `refused-${randomUUID()}`;
      const refused = await push(randomUUID(), JSON.stringify({ ...payload, after: 'c'.repeat(40), head_commit: { ...(payload.head_commit as object), id: 'c'.repeat(40), message } }));
      expect(refused).toMatchObject({ status: 503, body: { error: 'unavailable' }, retryAfter: '5' });
      expect(refused.body.message).toMatch(/^Redis refused the command: OOM /);
      expect(r.logText()).not.toContain(message);
    } finally {
      await admin.config('SET', 'maxmemory', '0');
      admin.disconnect();
    }
    expect((await push(randomUUID(), JSON.stringify({ ...githubBranchPush(), after: 'c'.repeat(40) }))).status).toBe(202);
  });
});

describe('a Redis that hangs (the connection up, nothing answering)', () => {
  it('is unreachable too: 503 within a second, 202 once it answers again', async () => {
    process.kill(redis.pid, 'SIGSTOP');
    try {
      const hung = await push(randomUUID(), JSON.stringify({ ...githubBranchPush(), after: 'f'.repeat(40) }));
      expect(hung).toMatchObject({ status: 503, body: { error: 'unavailable' }, retryAfter: '5' });
      // QUEUE_TIMEOUT_MS, and as much again when the receiver's own process stalled meanwhile (a loaded machine).
      expect(hung.ms).toBeLessThan(2 * QUEUE_TIMEOUT_MS + 700);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    await waitFor('Redis to answer again', async () => (await health()) === 200, { timeoutMs: 15_000 });
    expect((await push(randomUUID(), JSON.stringify({ ...githubBranchPush(), after: 'd'.repeat(40) }))).status).toBe(202);
  });
});

describe('a Redis that hangs for long', () => {
  it('leaves at most the backlog limit of webhooks waiting on it: later ones are refused before anything is sent', async () => {
    const limited = await startReceiver({ redisUrl: redis.url, apps: TEST_APPS, redisBacklogLimit: 5 });
    process.kill(redis.pid, 'SIGSTOP');
    try {
      const answers: Array<Promise<{ status: number; ms: number }>> = [];
      for (let i = 0; i < 20; i++) {
        const payload = JSON.stringify({ ...githubBranchPush(), after: i.toString(16).padStart(40, 'e') });
        const started = Date.now();
        answers.push(fetch(`${limited.url}/hooks/github`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': githubSignature(payload, SECRETS.hello) },
          body: payload,
          signal: AbortSignal.timeout(10_000),
        }).then((res) => ({ status: res.status, ms: Date.now() - started })));
        // One webhook per turn of the event loop: each its own command.
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      const settled = await Promise.all(answers);
      expect(settled.every((a) => a.status === 503)).toBe(true);
      expect(settled.filter((a) => a.ms < 300).length, 'refused at once, without waiting on Redis').toBeGreaterThanOrEqual(10);
      expect(limited.queue.unanswered).toBeLessThanOrEqual(5);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
      await waitFor('Redis to answer again', async () => (await health()) === 200, { timeoutMs: 15_000 });
      await limited.close();
    }
  });
});
