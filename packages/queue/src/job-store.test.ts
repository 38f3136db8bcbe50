import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedis, startTcpRelay, stopProcess, tempDir, uniqueName } from '@slipway/devstack/testing';
import type { DeployRequest } from './job-types.js';
import type { JobRetention } from './job-retention.js';
import { JobStore, SEARCH_SCAN } from './job-store.js';
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

  /** What is left of each job: its record, its log (and its writers' batch numbers), its place in the app's list. */
  async function remaining(store: JobStore, app: string, ids: string[]): Promise<string[]> {
    const listed = new Set((await store.list({ app, limit: 1000 })).map((job) => job.id));
    const left: string[] = [];
    for (const id of ids) {
      const record = await store.get(id);
      const log = await store.logLength(id);
      const writers = await redis.exists(store.keys.logWriters(id));
      expect([record !== null, log > 0, writers === 1, listed.has(id)], `job ${id}: record, log and index go together`).toEqual(record ? [true, true, true, true] : [false, false, false, false]);
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

  it('keeps the job that made the live release, however old: status and the dashboard name it', async () => {
    const store = storeWith({ keepPerApp: 2, keepDays: 0 });
    const ids: string[] = [];
    for (let n = 1; n <= 6; n++) {
      const job = await store.create(request('web', n));
      await store.appendLog(job.id, ['a line']);
      ids.push(job.id);
    }
    await store.finish(ids[0]!, 'completed');
    await store.recordLive('web', { sha: request('web', 1).sha, job: ids[0]! });
    for (const id of ids.slice(1)) await store.finish(id, 'failed', { error: 'x' });
    expect(await remaining(store, 'web', ids)).toEqual([ids[0], ids[4], ids[5]]);
    // Once another release is live, it goes with the next trim.
    await store.recordLive('web', { sha: request('web', 6).sha, job: ids[5]! });
    await store.finish((await store.create(request('web', 7))).id, 'completed');
    expect(await remaining(store, 'web', ids)).toEqual([ids[5]]);
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

  it('never removes the job it is filing: one finishing after newer ones is there for whoever waits on it, until the next finish', async () => {
    const store = storeWith({ keepPerApp: 2, keepDays: 0 });
    const jobs = [];
    for (let n = 1; n <= 4; n++) jobs.push(await store.create(request('late', n)));
    for (const job of jobs.slice(1)) await store.finish(job.id, 'completed');
    await store.finish(jobs[0]!.id, 'failed', { error: 'x' });
    expect(await store.get(jobs[0]!.id)).toMatchObject({ state: 'failed' });
    const next = await store.create(request('late', 5));
    await store.finish(next.id, 'completed');
    expect(await store.get(jobs[0]!.id)).toBeNull();
  });

  it('files a job for retention with its final state: a connection lost before the trim leaves it ended, filed, and trimmed later', async () => {
    // The trim names the app's finished set; nothing before it does. It fails unrun, as if the connection went.
    // (A connection cut instead would not do: ioredis sends the command again on the next one, and it never ends.)
    let cutting = true;
    const target = new URL(server.url);
    const relay = await startTcpRelay({ host: target.hostname, port: Number(target.port) }, {
      toServer: (chunk, c) => {
        if (cutting && chunk.includes(':jobs:finished:cut')) c.client.write('-ERR the test lost this command\r\n');
        else c.server.write(chunk);
      },
    });
    const cut = connectRedis(`redis://127.0.0.1:${relay.port}`, 'producer');
    try {
      await new Promise((resolve) => cut.once('ready', resolve));
      const prefix = uniqueName('retention');
      prefixes.push(prefix);
      const store = new JobStore(cut, prefix, { retention: { keepPerApp: 1, keepDays: 0 } });
      const old = await store.create(request('cut', 1));
      await store.appendLog(old.id, ['a line']);

      expect(await store.finish(old.id, 'cancelled', { error: 'cancelled by an operator' })).toMatchObject({ state: 'cancelled' });
      expect(await redis.zscore(store.keys.finished('cut'), old.id)).toBe(old.id);
      expect(Number(await redis.zscore(store.keys.finishedAt('cut'), old.id))).toBeGreaterThan(Date.now() - 60_000);

      cutting = false;
      const reader = new JobStore(redis, prefix, { retention: { keepPerApp: 1, keepDays: 0 } });
      const next = await reader.create(request('cut', 2));
      await reader.finish(next.id, 'completed');
      expect(await reader.get(old.id)).toBeNull();
      expect(await reader.get(next.id)).toMatchObject({ state: 'completed' });
    } finally {
      cut.disconnect();
      relay.cut();
    }
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

  it('dates jobs finished before finish times were indexed from their records, in indexHistory\'s bounded calls', async () => {
    const legacy = storeWith(null);
    const ids: string[] = [];
    for (let n = 1; n <= 6; n++) {
      const job = await legacy.create(request('web', n));
      await legacy.appendLog(job.id, ['a line']);
      await legacy.finish(job.id, 'completed', { finishedAt: n <= 3 ? daysAgo(40) : daysAgo(1) });
      ids.push(job.id);
    }
    // What a store of the previous version left: finished jobs indexed by id only; one of them with no end time
    // (dated by its creation, yesterday's: not 1970's, which would make it old enough to go).
    await redis.del(legacy.keys.finishedAt('web'));
    await redis.hset(legacy.keys.job(ids[5]!), 'finishedAt', 'null');
    const store = new JobStore(redis, prefixes.at(-1)!, { retention: { keepPerApp: 2, keepDays: 30 } });
    const next = await store.create(request('web', 7));
    await store.appendLog(next.id, ['a line']);
    // Undated, a job is kept: a finish never walks the whole history to date it (one call, blocking Redis, on a large one).
    await store.finish(next.id, 'completed');
    expect(await remaining(store, 'web', [...ids, next.id])).toEqual([...ids, next.id]);
    expect(await redis.zcard(store.keys.finishedAt('web'))).toBe(1);
    // indexHistory dates them, two to a call here; the next finish trims.
    expect((await store.indexHistory({ batch: 2 })).calls, 'seven jobs, two to a call, and the call that finds the end').toBe(4);
    const finished = Date.parse((await store.get(ids[0]!))!.finishedAt!);
    expect(Number(await redis.zscore(store.keys.finishedAt('web'), ids[0]!)), 'to the second').toBe(finished - (finished % 1000));
    const last = await store.create(request('web', 8));
    await store.appendLog(last.id, ['a line']);
    await store.finish(last.id, 'completed');
    expect(await remaining(store, 'web', [...ids, next.id, last.id])).toEqual([ids[3], ids[4], ids[5], next.id, last.id]);
  });
});

describe('JobStore history: indexes, cursor pages, search, sweep', () => {
  let redis: Redis;
  const tmp = tempDir('slipway-history-');
  let server: Awaited<ReturnType<typeof privateRedis>>;
  const TRIGGERS = ['webhook', 'cli', 'git-push', 'retry', 'rollback'] as const;

  beforeAll(async () => {
    server = await privateRedis(tmp.path);
    redis = connectRedis(server.url, 'worker');
    await redis.ping();
  });
  afterAll(async () => {
    redis.disconnect();
    await server.stop();
    tmp.remove();
  });

  /** `count` jobs of `apps`, in turn, with triggers in turn and a commit message each, created 200 to a round trip as the receiver does. */
  async function seed(store: JobStore, count: number, apps: string[], message = (n: number) => `change number ${n}`): Promise<string[]> {
    const ids: string[] = [];
    for (let from = 0; from < count; from += 200) {
      const requests = Array.from({ length: Math.min(200, count - from) }, (_, i): DeployRequest => {
        const n = from + i;
        const sha = (0xabc00000 + n).toString(16).padEnd(40, '0');
        return {
          ...request(apps[n % apps.length]!, n), sha, trigger: TRIGGERS[n % TRIGGERS.length]!,
          push: { provider: 'github', delivery: `d-${n}`, repository: { fullName: 'acme/web', cloneUrl: 'https://github.com/acme/web.git', htmlUrl: null }, ref: 'refs/heads/master', branch: 'master', sha, before: '0'.repeat(40), pusher: 'ann', message: message(n), compareUrl: null },
        };
      });
      const [group] = await store.createGroups([{ requests }]);
      ids.push(...group!.records.map((r) => r.id));
    }
    return ids;
  }

  /** Counts of Redis commands by name, from INFO commandstats. */
  async function commandCounts(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const [, name, calls] of (await redis.info('commandstats')).matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) counts[name!] = Number(calls);
    return counts;
  }

  it('pages by cursor: every job exactly once across pages, newest first, while new jobs arrive and others finish', async () => {
    const store = new JobStore(redis, uniqueName('history'), { retention: null });
    const ids = await seed(store, 230, ['web', 'api', 'docs']);
    const seen: string[] = [];
    const seenOfApp: string[] = [];
    let next: string | null | undefined;
    let nextOfApp: string | null | undefined;
    let n = 0;
    do {
      const page = await store.page({ limit: 40, before: next ?? undefined });
      seen.push(...page.jobs.map((j) => j.id));
      next = page.next;
      if (nextOfApp !== null) {
        const ofApp = await store.page({ app: 'api', limit: 15, before: nextOfApp });
        seenOfApp.push(...ofApp.jobs.map((j) => j.id));
        nextOfApp = ofApp.next;
      }
      // Between pages: new jobs, and old ones moving on.
      await seed(store, 7, ['web', 'api']);
      await store.finish(ids[n++ * 13]!, 'completed');
    } while (next !== null || nextOfApp !== null);
    const newestFirst = [...ids].reverse();
    expect(seen).toEqual(newestFirst);
    const ofApp = newestFirst.filter((_, i) => (ids.length - 1 - i) % 3 === 1);
    expect(seenOfApp).toEqual(ofApp);
  });

  it('a page that ends the history says so (no next), however many jobs it holds: by index and by commit', async () => {
    const store = new JobStore(redis, uniqueName('history'), { retention: null });
    const ids = await seed(store, 6, ['web']);
    const first = await store.page({ limit: 3 });
    expect(first.next).toBe(ids[3]);
    expect(await store.page({ limit: 3, before: first.next! })).toEqual({ jobs: ids.slice(0, 3).reverse().map((id) => expect.objectContaining({ id })), next: null });
    expect((await store.page({ limit: 6 })).next).toBeNull();
    const commits = await store.page({ search: 'abc0000', limit: 3 });
    expect(commits.next).toBe(ids[3]);
    expect((await store.page({ search: 'abc0000', limit: 3, before: commits.next! })).next).toBeNull();
  });

  it('filters by app, state and trigger, alone and together, following state changes', async () => {
    const store = new JobStore(redis, uniqueName('history'), { retention: null });
    const ids = await seed(store, 60, ['web', 'api']);
    for (let i = 0; i < 60; i += 4) await store.finish(ids[i]!, i % 8 === 0 ? 'failed' : 'completed', { error: i % 8 === 0 ? 'build_failed' : null });
    await store.update(ids[59]!, { state: 'active' });
    const all = await store.list({ limit: 100 });
    expect(all).toHaveLength(60);
    for (const app of [undefined, 'web', 'api']) {
      for (const state of [undefined, 'waiting', 'active', 'completed', 'failed'] as const) {
        for (const trigger of [undefined, ...TRIGGERS]) {
          const expected = all.filter((j) => (!app || j.app === app) && (!state || j.state === state) && (!trigger || j.trigger === trigger)).map((j) => j.id);
          expect((await store.list({ app, state, trigger, limit: 100 })).map((j) => j.id), `${app} ${state} ${trigger}`).toEqual(expected);
        }
      }
    }
    expect((await store.list({ state: 'failed', limit: 100 })).length).toBe(8);
    expect((await store.list({ state: 'active', limit: 100 })).map((j) => j.id)).toEqual([ids[59]]);
    // The newest of many filters in two round trips (the overview asks four per app): what each asks alone, first.
    const filters = [{}, { app: 'web' }, { app: 'web', state: 'completed' }, { state: 'failed' }, { app: 'nope' }, { app: 'web', state: 'cancelled' }, { app: 'web' }] as const;
    const newest = await store.newest(filters);
    expect(newest).toEqual(await Promise.all(filters.map(async (f) => (await store.list({ ...f, limit: 1 }))[0])));
    expect(newest.map((j) => j?.id)).toEqual([ids[59], ids[58], ids[52], ids[56], undefined, undefined, ids[58]]);
  });

  it('a job that ended stays as it ended: a later finish (of any state) or start changes nothing', async () => {
    const store = new JobStore(redis, uniqueName('ended'), { retention: null });
    const [id] = await seed(store, 1, ['web']);
    const done = await store.finish(id!, 'completed', { result: { image: 'slipway/web:1', release: id! } });
    // A cancel that read the job before it completed, and a worker that checked it before it was cancelled.
    expect(await store.finish(id!, 'cancelled', { error: 'cancelled (no live queue job)' })).toEqual(done);
    expect(await store.update(id!, { state: 'active', attempts: 2 })).toEqual(done);
    // An attempt cut off that carried on and ended too: the first end, its time and result, is the job's.
    expect(await store.finish(id!, 'completed', { result: { image: 'slipway/web:2', release: id! } })).toEqual(done);
    expect((await store.list({ state: 'completed' })).map((j) => j.id)).toEqual([id]);
    expect(await store.list({ state: 'cancelled' })).toEqual([]);
    // Fields that do not change the state still do.
    expect(await store.update(id!, { retriedBy: '99' })).toMatchObject({ state: 'completed', retriedBy: '99' });
  });

  it('a job that completes or is superseded after an attempt failed keeps no error of that attempt', async () => {
    const store = new JobStore(redis, uniqueName('unfailed'), { retention: null });
    const [completed, superseded, failed] = await seed(store, 3, ['web']);
    for (const id of [completed!, superseded!, failed!]) await store.update(id, { state: 'waiting', error: 'etcd unreachable: retried' });
    expect(await store.finish(completed!, 'completed', { result: { image: 'slipway/web:1', release: completed! } })).toMatchObject({ state: 'completed', error: null });
    expect(await store.finish(superseded!, 'superseded', { supersededBy: completed! })).toMatchObject({ state: 'superseded', error: null });
    expect(await store.finish(failed!, 'failed', {})).toMatchObject({ state: 'failed', error: 'etcd unreachable: retried' });
  });

  it('searches commits by prefix and messages by words, case-insensitive, with filters, a bounded scan per call', async () => {
    const store = new JobStore(redis, uniqueName('history'), { retention: null });
    const total = SEARCH_SCAN + 300;
    const ids = await seed(store, total, ['web', 'api'], (n) => (n === 3 ? 'Fix the "Login" page\n\nlong body' : n === 7 ? 'login rate limit' : n === 9 ? 'Defaced banner' : `change number ${n}`));
    // Commit of job n: (0xabc00000 + n) in hex.
    expect((await store.page({ search: 'ABC00003' })).jobs.map((j) => j.id)).toEqual([ids[3]]);
    expect((await store.page({ search: 'abc0000' })).jobs.map((j) => j.id)).toEqual(ids.slice(0, 16).reverse());
    expect((await store.page({ search: 'abc0000', app: 'web', limit: 3 }))).toEqual({ jobs: [expect.objectContaining({ id: ids[14] }), expect.objectContaining({ id: ids[12] }), expect.objectContaining({ id: ids[10] })], next: ids[10] });
    expect((await store.page({ search: (0xabc00000 + total - 1).toString(16).padEnd(40, '0') })).jobs.map((j) => j.id)).toEqual([ids[total - 1]]);
    // The newest SEARCH_SCAN jobs hold no login: the first call says where to go on.
    const first = await store.page({ search: 'LOGIN' });
    expect(first.jobs).toEqual([]);
    expect(first.next).toBe(ids[300]);
    const second = await store.page({ search: 'LOGIN', before: first.next! });
    expect(second.jobs.map((j) => j.id)).toEqual([ids[7], ids[3]]);
    expect(second.next).toBeNull();
    expect((await store.page({ search: '"login"', before: first.next! })).jobs.map((j) => j.id)).toEqual([ids[3]]);
    expect((await store.page({ search: 'login', app: 'web', before: first.next! })).jobs).toEqual([]);
    expect((await store.page({ search: 'login', app: 'api', before: first.next!, limit: 1 })).jobs.map((j) => j.id)).toEqual([ids[7]]);
    // A word of hex letters that starts no commit is a word too: looked for in messages, with the same cursor.
    expect(await store.page({ search: 'defaced' })).toEqual({ jobs: [], next: ids[300] });
    expect((await store.page({ search: 'DEFACED', before: ids[300] })).jobs.map((j) => j.id)).toEqual([ids[9]]);
  });

  it('reads only the page it answers: no KEYS or SCAN, no record beyond the page, however old the matches', async () => {
    const store = new JobStore(redis, uniqueName('history'), { retention: null });
    const ids = await seed(store, 3_000, ['web']);
    for (const id of ids.slice(0, 5)) await store.finish(id, 'failed', { error: 'build_failed' });
    const before = await commandCounts();
    const failed = await store.list({ app: 'web', state: 'failed', limit: 5 });
    const deep = await store.page({ before: ids[100], limit: 20 });
    const after = await commandCounts();
    expect(failed.map((j) => j.id)).toEqual(ids.slice(0, 5).reverse());
    expect(deep.jobs.map((j) => j.id)).toEqual(ids.slice(80, 100).reverse());
    expect((after.hgetall ?? 0) - (before.hgetall ?? 0)).toBe(25);
    expect([after.keys ?? 0, after.scan ?? 0]).toEqual([before.keys ?? 0, before.scan ?? 0]);
  });

  it('sweeps a long history in bounded batches down to what retention keeps, indexes and logs included, while jobs keep arriving', async () => {
    const prefix = uniqueName('history');
    const everything = new JobStore(redis, prefix, { retention: null });
    const ids = await seed(everything, 1_200, ['web', 'api']);
    await Promise.all(ids.map((id) => everything.appendLog(id, ['one line', 'two lines'])));
    await Promise.all(ids.slice(0, 1_180).map((id) => everything.finish(id, 'completed', { finishedAt: daysAgo(40) })));
    const store = new JobStore(redis, prefix, { retention: { keepPerApp: 30, keepDays: 7 } });
    const [sweep, arrived] = await Promise.all([store.sweep({ batch: 100 }), seed(store, 50, ['web'])]);
    // 590 finished jobs per app, the newest 30 of each kept; the 20 unfinished stay.
    expect(sweep.removed).toBe(2 * 560);
    expect(sweep.calls).toBeGreaterThanOrEqual(12);
    const kept = [...ids.slice(1_120, 1_180), ...ids.slice(1_180), ...arrived];
    expect((await store.list({ limit: 2_000 })).map((j) => j.id).sort()).toEqual(kept.sort());
    for (const id of [ids[0]!, ids[1_119]!]) {
      expect([await store.get(id), await store.logLength(id)]).toEqual([null, 0]);
    }
    const indexes = [store.keys.jobIndex({}), store.keys.jobIndex({ app: 'web' }), store.keys.jobIndex({ state: 'completed' }), store.keys.jobIndex({ app: 'api', state: 'completed', trigger: 'cli' })];
    const sizes = await Promise.all(indexes.map((key) => redis.zcard(key)));
    expect(sizes).toEqual([kept.length, 30 + 10 + 50, 60, (await store.list({ app: 'api', state: 'completed', trigger: 'cli', limit: 100 })).length]);
    expect(sizes[3]).toBeGreaterThan(0);
    expect(await redis.zcard(store.keys.commits)).toBe(kept.length);
    expect((await store.sweep({ batch: 100 })).removed).toBe(0);
  });

  it('files jobs an older Slipway recorded (only in the all and per-app indexes) in every index, once, and retention then finds them', async () => {
    const prefix = uniqueName('history');
    const store = new JobStore(redis, prefix, { retention: null });
    const ids = await seed(store, 1_100, ['web', 'api']);
    await Promise.all(ids.slice(0, 1_000).map((id) => store.finish(id, 'completed', { finishedAt: daysAgo(40) })));
    const wanted = async () => ({
      filtered: (await store.list({ app: 'web', state: 'completed', trigger: 'cli', limit: 2_000 })).map((j) => j.id),
      commit: (await store.list({ search: (0xabc00007).toString(16).padEnd(12, '0'), limit: 10 })).map((j) => j.id),
      completed: await redis.zcard(store.keys.jobIndex({ state: 'completed' })),
      finished: await redis.zcard(store.keys.finished('web')),
    });
    const before = await wanted();
    // What the history looked like before: records, `all` and the app's index; none of the others, and one id whose record is gone.
    const kept = new Set([store.keys.all, store.keys.byApp('web'), store.keys.byApp('api'), store.keys.seq]);
    for (const key of await redis.keys(`${prefix}:jobs:*`)) if (!kept.has(key)) await redis.del(key);
    await redis.zadd(store.keys.all, 999_999, '999999');
    expect(await store.list({ state: 'completed', limit: 10 })).toEqual([]);

    const first = await store.indexHistory({ batch: 300 });
    expect(first.calls).toBe(Math.ceil(1_101 / 300));
    expect(await wanted()).toEqual(before);
    expect(before.filtered.length).toBeGreaterThan(0);
    expect(before.commit).toEqual([ids[7]]);
    expect(await redis.zscore(store.keys.all, '999999')).toBeNull();
    expect(await redis.smembers(store.keys.apps)).toEqual(expect.arrayContaining(['web', 'api']));
    // Once: the second call only reads the mark.
    expect((await store.indexHistory()).calls).toBe(0);
    // Retention reaches the old finished jobs now (dated from their records).
    const trimming = new JobStore(redis, prefix, { retention: { keepPerApp: 10, keepDays: 7 } });
    expect((await trimming.sweep()).removed).toBe(1_000 - 2 * 10);
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

describe('JobStore on an auto-pipelined connection (the receiver\'s)', () => {
  const tmp = tempDir('slipway-pipelined-');
  let server: Awaited<ReturnType<typeof privateRedis>>;
  beforeAll(async () => {
    server = await privateRedis(tmp.path);
  });
  afterAll(async () => {
    await server.stop();
    tmp.remove();
  });

  it('runs its scripts from the first call, even when another command went out in the same tick', async () => {
    const redis = connectRedis(server.url, 'producer', { enableAutoPipelining: true });
    try {
      await new Promise((resolve) => redis.once('ready', resolve));
      const store = new JobStore(redis, uniqueName('pipelined'));
      // ioredis builds one pipeline per tick: a script defined after that pipeline exists is not on it.
      const [, created] = await Promise.all([redis.get('anything'), store.create(request('web'))]);
      const [, updated] = await Promise.all([redis.get('anything'), store.update(created.id, { state: 'active' })]);
      expect(updated.state).toBe('active');
      const [, finished] = await Promise.all([redis.get('anything'), store.finish(created.id, 'completed', {})]);
      expect(finished.state).toBe('completed');
    } finally {
      redis.disconnect();
    }
  });
});
