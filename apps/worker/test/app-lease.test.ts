import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type RedisService, startRedis, stopProcess, tempDir, uniqueName } from '@slipway/devstack/testing';
import { connectRedis, type Redis } from '@slipway/queue/redis';
import { AppLease } from '../src/app-lease.js';

// A Redis of our own, to freeze; the shared one is never touched.
const dir = tempDir('slipway-lease-redis-');
let redis: RedisService;
let client: Redis;

beforeAll(async () => {
  redis = await startRedis(join(dir.path, 'redis'), await freePort());
  client = connectRedis(redis.url, 'worker');
});
afterAll(async () => {
  client.disconnect();
  await stopProcess(redis.pid);
  dir.remove();
});

describe('AppLease', () => {
  it('counts itself lost before its key can expire when Redis stops answering, so no second holder overlaps it', async () => {
    const key = uniqueName('lease');
    const ttlMs = 3000;
    let lostAt: number | null = null;
    const lease = new AppLease(client, key, 'job-1:a', ttlMs, () => {
      lostAt = Date.now();
    });
    expect(await lease.acquire()).toBe(true);
    // Renewed while Redis answers: held well past its TTL.
    await new Promise((resolve) => setTimeout(resolve, 1.5 * ttlMs));
    expect(lostAt).toBeNull();

    // Redis hangs (the connection up, nothing answering): renewals neither succeed nor fail.
    const asked = Date.now();
    const expiresAt = asked + (await client.pttl(key));
    process.kill(redis.pid, 'SIGSTOP');
    try {
      await new Promise((resolve) => setTimeout(resolve, ttlMs));
      expect(lostAt, 'the lease is given up without an answer from Redis').not.toBeNull();
      // Before the key can expire (and be taken by another worker): a quarter of the TTL before, less
      // whatever this loaded machine delays a timer by.
      expect(lostAt!).toBeLessThan(expiresAt);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    await lease.release();
  });

  it('is lost at once when another holder has the key', async () => {
    const key = uniqueName('lease');
    let lost = false;
    const lease = new AppLease(client, key, 'job-2:a', 600, () => {
      lost = true;
    });
    expect(await lease.acquire()).toBe(true);
    await client.set(key, 'job-3:b', 'PX', 5000);
    // At its next renewal (every 200 ms), not at the end of its TTL: within the other's 5 s hold.
    await expect.poll(() => lost, { timeout: 3000 }).toBe(true);
    expect(await client.get(key)).toBe('job-3:b');
    await lease.release();
    expect(await client.get(key), 'releasing a lost lease leaves the new holder').toBe('job-3:b');
  });
});
