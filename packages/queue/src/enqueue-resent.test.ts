import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisRelay, startRedisRelay, testStack, uniqueName } from '@slipway/devstack/testing';
import { bullJobId, DeployQueue } from './deploy-queue.js';
import { connectRedis, type Redis } from './redis.js';

// The CLI's deploy, rollback and retry enqueue one job each. ioredis sends a command again after a reconnect when its
// answer was lost; the script had run, so a second record was made, and the first (never given a BullMQ job) ended failed.
describe('queue calls whose answer is lost to a reconnect (ioredis sends them again)', () => {
  const prefix = uniqueName('q');
  let relay: RedisRelay;
  let redis: Redis;
  let queue: DeployQueue;
  beforeAll(async () => {
    relay = await startRedisRelay(testStack().redis!.url);
    redis = connectRedis(relay.url, 'producer');
    queue = new DeployQueue({ redis, prefix, attempts: 1 });
    await queue.bull.waitUntilReady();
  });
  afterAll(async () => {
    const direct = connectRedis(testStack().redis!.url, 'producer');
    await new Promise((resolve) => direct.once('ready', resolve));
    const stale = await direct.keys(`${prefix}:*`);
    if (stale.length) await direct.del(...stale);
    direct.disconnect();
    await queue.close();
    redis.disconnect();
    relay.close();
  });

  it('queues one job, the one it answers with, when ioredis sends the script again', async () => {
    const app = uniqueName('resent');
    // The script is loaded on the connection first: the cut must come after it ran, not after a NOSCRIPT.
    await queue.enqueue({ app: `${app}-warm`, sha: null, ref: null, image: 'img:1', trigger: 'cli' });
    await redis.ping();
    relay.dropReplyTo(app);
    const record = await queue.enqueue({ app, sha: null, ref: null, image: 'img:2', trigger: 'cli' });
    expect(relay.drops()).toBe(1);
    expect((await queue.store.list({ app })).map((j) => j.id)).toEqual([record.id]);
    expect((await queue.bull.getJob(bullJobId(record.id)))?.data).toEqual({ id: record.id });
    expect(record).toMatchObject({ app, image: 'img:2', state: 'waiting', trigger: 'cli' });
  });
  it('a retry whose claim was sent again is not refused as being re-run by another request', async () => {
    const app = uniqueName('retried');
    const failed = await queue.enqueue({ app, sha: null, ref: null, image: 'img:1', trigger: 'cli' });
    await queue.store.finish(failed.id, 'failed', { error: 'health check failed' });
    await redis.ping();
    relay.dropReplyTo(`:job:${failed.id}:retrying`);
    const again = await queue.retry(failed.id);
    expect(relay.drops()).toBe(2);
    expect(again).toMatchObject({ app, image: 'img:1', trigger: 'retry', retryOf: failed.id, state: 'waiting' });
  });
});
