import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedis, stopProcess, tempDir, uniqueName } from '@slipway/devstack/testing';
import type { DeployRequest } from './job-types.js';
import type { JobRetention } from './job-retention.js';
import { JobStore } from './job-store.js';
import { connectRedis, type Redis } from './redis.js';

const DAY = 24 * 60 * 60 * 1000;
const daysAgo = (days: number) => new Date(Date.now() - days * DAY).toISOString();
const request = (app: string, n = 1): DeployRequest => ({ app, sha: n.toString(16).padStart(40, '0'), ref: 'master', image: null, trigger: 'cli' });

/** A Redis of its own, in a directory of its own (a Redis started where another saved its data would load it). */
async function privateRedis(parent: string): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = join(parent, `redis-${port}`);
  mkdirSync(dir);
  const server = await startRedis(dir, port);
  return { url: server.url, stop: () => stopProcess(server.pid) };
}

describe('JobStore retention', () => {
  let redis: Redis;
  // Not the stack's Redis: deploy-queue.test.ts counts every script call made there while it runs.
  const tmp = tempDir('slipway-retention-');
  let server: Awaited<ReturnType<typeof privateRedis>>;
  const prefixes: string[] = [];
  const storeWith = (retention: JobRetention | null) => {
    const prefix = uniqueName('retention');
    prefixes.push(prefix);
    return new JobStore(redis, prefix, { retention });
  };

  beforeAll(async () => {
    server = await privateRedis(tmp.path);
    redis = connectRedis(server.url, 'worker');
    await redis.ping();
  });
  afterEach(async () => {
    for (const prefix of prefixes.splice(0)) {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
    }
  });
  afterAll(async () => {
    redis.disconnect();
    await server.stop();
    tmp.remove();
  });

  /** What is left of each job: its record, its log, its place in the app's list. */
  async function remaining(store: JobStore, app: string, ids: string[]): Promise<string[]> {
    const listed = new Set((await store.list({ app, limit: 1000 })).map((job) => job.id));
    const left: string[] = [];
    for (const id of ids) {
      const record = await store.get(id);
      const log = await store.logLength(id);
      expect([record !== null, log > 0, listed.has(id)], `job ${id}: record, log and index go together`).toEqual(record ? [true, true, true] : [false, false, false]);
      if (record) left.push(id);
    }
    return left;
  }

  it('removes a finished job only when it is both beyond the newest keep_per_app of its app and older than keep_days', async () => {
    const store = storeWith({ keepPerApp: 3, keepDays: 2 });
    const ids: string[] = [];
    for (let n = 1; n <= 10; n++) {
      const job = await store.create(request('web', n));
      await store.appendLog(job.id, [`job ${n} line 1`, `job ${n} line 2`]);
      ids.push(job.id);
    }
    const other = await store.create(request('api'));
    await store.appendLog(other.id, ['other app']);
    await store.finish(other.id, 'completed', { finishedAt: daysAgo(100) });
    // Job 4 ran long: an old id, finished an hour ago. Job 7 never finished.
    const finishedAt: Record<number, string> = { 1: daysAgo(10), 2: daysAgo(10), 3: daysAgo(9), 4: daysAgo(1 / 24), 5: daysAgo(8), 6: daysAgo(3), 8: daysAgo(10), 9: daysAgo(10), 10: daysAgo(10) };
    for (const [n, at] of Object.entries(finishedAt)) await store.finish(ids[Number(n) - 1]!, 'completed', { finishedAt: at });
    await store.update(ids[6]!, { state: 'active' });

    // Newest three finished: 8, 9, 10. Younger than two days: 4. Unfinished: 7.
    expect(await remaining(store, 'web', ids)).toEqual([ids[3], ids[6], ids[7], ids[8], ids[9]]);
    expect(await remaining(store, 'api', [other.id])).toEqual([other.id]);
  });

  it('with keep_days 0, keeps exactly the newest keep_per_app finished jobs, and every unfinished one', async () => {
    const store = storeWith({ keepPerApp: 5, keepDays: 0 });
    const ids: string[] = [];
    for (let n = 1; n <= 30; n++) {
      const job = await store.create(request('web', n));
      await store.appendLog(job.id, ['a line']);
      ids.push(job.id);
      if (n % 10 !== 0) await store.finish(job.id, n % 3 === 0 ? 'failed' : 'completed');
    }
    const unfinished = [ids[9]!, ids[19]!, ids[29]!];
    const finished = ids.filter((id) => !unfinished.includes(id));
    expect(await remaining(store, 'web', ids)).toEqual([ids[9]!, ids[19]!, ...finished.slice(-5), ids[29]!].sort((a, b) => Number(a) - Number(b)));
  });

  it('with retention off (null), removes nothing', async () => {
    const store = storeWith(null);
    const ids: string[] = [];
    for (let n = 1; n <= 20; n++) {
      const job = await store.create(request('web', n));
      await store.appendLog(job.id, ['a line']);
      await store.finish(job.id, 'completed', { finishedAt: daysAgo(1000) });
      ids.push(job.id);
    }
    expect(await remaining(store, 'web', ids)).toEqual(ids);
  });

  it('dates jobs finished before finish times were indexed from their records', async () => {
    const legacy = storeWith(null);
    const ids: string[] = [];
    for (let n = 1; n <= 6; n++) {
      const job = await legacy.create(request('web', n));
      await legacy.appendLog(job.id, ['a line']);
      await legacy.finish(job.id, 'completed', { finishedAt: n <= 3 ? daysAgo(40) : daysAgo(1) });
      ids.push(job.id);
    }
    // What a store of the previous version left: finished jobs indexed by id only.
    await redis.del(legacy.keys.finishedAt('web'));
    const store = new JobStore(redis, prefixes.at(-1)!, { retention: { keepPerApp: 2, keepDays: 30 } });
    const next = await store.create(request('web', 7));
    await store.appendLog(next.id, ['a line']);
    await store.finish(next.id, 'completed');
    expect(await remaining(store, 'web', [...ids, next.id])).toEqual([ids[3], ids[4], ids[5], next.id]);
  });
});

/**
 * Not a test of behaviour: the figure asked for in issue 16. Run with
 * `SLIPWAY_MEASURE=1 npx vitest run src/job-store.test.ts -t memory` in packages/queue.
 */
describe.runIf(process.env.SLIPWAY_MEASURE)('Redis memory of job history', () => {
  const JOBS = 10_000;
  const tmp = tempDir('slipway-retention-');
  afterAll(() => tmp.remove());

  /** used_memory of a Redis of its own after JOBS jobs of 3 apps, each with a 40-line log, created and finished as the worker does. */
  async function usedMemory(retention: JobRetention | null): Promise<{ before: number; after: number; jobs: number; ms: number }> {
    const server = await privateRedis(tmp.path);
    const redis = connectRedis(server.url, 'worker');
    try {
      const store = new JobStore(redis, 'slipway', { retention });
      const memory = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
      const before = await memory();
      const started = Date.now();
      for (let n = 1; n <= JOBS; n++) {
        const app = `app-${n % 3}`;
        const job = await store.create(request(app, n));
        await store.update(job.id, { state: 'active', startedAt: new Date().toISOString() });
        for (const step of ['checkout', 'build', 'start', 'health', 'switch', 'drain', 'done'] as const) await store.step(job.id, step);
        const lines = Array.from({ length: 40 }, (_, i) => `Step ${i}/40 : RUN echo building ${app} at ${job.sha} line ${i}`);
        await store.appendLog(job.id, lines);
        await store.finish(job.id, 'completed', { result: { image: `slipway/${app}:${job.sha!.slice(0, 12)}`, release: job.id } });
      }
      const ms = Date.now() - started;
      const jobs = (await redis.keys('slipway:job:*')).filter((key) => /^slipway:job:\d+$/.test(key)).length;
      return { before, after: await memory(), jobs, ms };
    } finally {
      redis.disconnect();
      await server.stop();
    }
  }

  it(`measures used_memory after ${JOBS} jobs: keep_per_app 200 and keep_days 0, then no retention`, async () => {
    const kept = await usedMemory({ keepPerApp: 200, keepDays: 0 });
    const all = await usedMemory(null);
    const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
    console.log(`retention keep_per_app 200, keep_days 0: used_memory ${mb(kept.before)} -> ${mb(kept.after)}, ${kept.jobs} job records left, ${kept.ms} ms`);
    console.log(`no retention:                            used_memory ${mb(all.before)} -> ${mb(all.after)}, ${all.jobs} job records left, ${all.ms} ms`);
    expect(kept.jobs).toBe(600);
    expect(all.jobs).toBe(JOBS);
  }, 600_000);
});
