import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testStack } from '@slipway/devstack/testing';
import { connectRedis, type Redis, redisForDisplay, withRedis } from './redis.js';

describe('withRedis', () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = connectRedis(testStack().redis!.url, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
  });
  afterAll(() => redis.disconnect());

  /** Holds this process's event loop, as parsing a large body or a long GC does. */
  const stall = (ms: number) => {
    const until = Date.now() + ms;
    while (Date.now() < until) { /* busy */ }
  };

  it('does not report this process\'s own stall as Redis not answering: the answer that came meanwhile is taken', async () => {
    const answered = withRedis(redis, () => redis.ping(), 100);
    stall(400);
    await expect(answered).resolves.toBe('PONG');
  });

  it('still gives up on a Redis that does not answer', async () => {
    const subscriber = redis.duplicate();
    await new Promise((resolve) => subscriber.once('ready', resolve));
    try {
      // BLPOP on a key nobody pushes to: an answer that never comes within the deadline.
      await expect(withRedis(subscriber, () => subscriber.blpop(`withredis-${process.pid}-nothing`, 5), 200)).rejects.toMatchObject({ code: 'unavailable', message: 'Redis did not answer within 200 ms' });
    } finally {
      subscriber.disconnect();
    }
  });
});

describe('redisForDisplay', () => {
  it('hides the whole password: with no user, and holding an @', () => {
    expect(redisForDisplay('redis://:Xk9@pQ2zL7@10.0.0.5:6379/0')).toBe('redis://***@10.0.0.5:6379/0');
    expect(redisForDisplay('rediss://app:s3cret@cache:6380')).toBe('rediss://***@cache:6380');
    expect(redisForDisplay('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });
});
