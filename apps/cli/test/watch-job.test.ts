import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, type RedisService, startRedis, stopProcess, tempDir, testStack, uniqueName } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectRedis } from '@slipway/queue/redis';
import { watchJob } from '../src/job-commands.js';
import type { Terminal } from '../src/terminal.js';

describe('watchJob: following a job across a Redis restart', () => {
  const dir = tempDir();
  let redis: RedisService | undefined;

  afterAll(async () => {
    if (redis) await stopProcess(redis.pid);
    dir.remove();
  });

  it('rides out Redis going away and coming back, then reports how the job ended; gives up only after outageMs', async () => {
    const port = await freePort();
    redis = await startRedis(join(dir.path, 'redis'), port);
    const connection = connectRedis(redis.url, 'producer');
    await new Promise((resolve) => connection.once('ready', resolve));
    const queue = new DeployQueue({ redis: connection, prefix: uniqueName('watch') });
    try {
      const job = await queue.enqueue({ app: 'watched', sha: 'a'.repeat(40), ref: 'master', image: null, trigger: 'cli' });
      await queue.store.appendLog(job.id, ['before the restart']);
      const said: string[] = [];
      const terminal: Terminal = { out: (t) => said.push(t), err: (t) => said.push(t), interactive: false };
      const watching = watchJob(queue.store, job.id, terminal, { showLog: true, intervalMs: 50 });
      const outcome = watching.then((r) => r, (err: unknown) => err as Error);

      await new Promise((r) => setTimeout(r, 300));
      await stopProcess(redis.pid);
      await new Promise((r) => setTimeout(r, 1500));
      redis = await startRedis(join(dir.path, 'redis'), port);
      await new Promise((resolve) => (connection.status === 'ready' ? resolve(null) : connection.once('ready', resolve)));
      await queue.store.appendLog(job.id, ['after the restart']);
      await queue.store.finish(job.id, 'completed');

      const final = await outcome;
      expect(final).toMatchObject({ id: job.id, state: 'completed' });
      const text = said.join('\n');
      expect(text).toMatch(new RegExp(`Redis is unreachable \\(.*\\); still following job ${job.id}`));
      expect(text).toMatch(/Redis is back after/);
      expect(text.indexOf('before the restart')).toBeLessThan(text.indexOf('after the restart'));

      // Gone for good: it says so, once outageMs has passed.
      await stopProcess(redis.pid);
      redis = undefined;
      const next = await queue.enqueue({ app: 'watched', sha: 'b'.repeat(40), ref: 'master', image: null, trigger: 'cli' }).catch(() => null);
      expect(next).toBeNull();
      await expect(watchJob(queue.store, job.id, terminal, { showLog: false, outageMs: 1500 })).rejects.toMatchObject({ code: 'unavailable', message: expect.stringMatching(/which may still be running/) });
    } finally {
      await queue.close();
      connection.disconnect();
    }
  }, 60_000);

  it('gives up on a Redis that stops answering with its connection open (paused), as on one that went away', async () => {
    const port = await freePort();
    redis = await startRedis(join(dir.path, 'paused'), port);
    const connection = connectRedis(redis.url, 'producer');
    await new Promise((resolve) => connection.once('ready', resolve));
    const queue = new DeployQueue({ redis: connection, prefix: uniqueName('watch-paused') });
    const paused = redis.pid;
    try {
      const job = await queue.enqueue({ app: 'watched', sha: 'c'.repeat(40), ref: 'master', image: null, trigger: 'cli' });
      const said: string[] = [];
      const terminal: Terminal = { out: (t) => said.push(t), err: (t) => said.push(t), interactive: false };
      process.kill(paused, 'SIGSTOP');
      const started = Date.now();
      await expect(watchJob(queue.store, job.id, terminal, { showLog: true, intervalMs: 50, outageMs: 1500 })).rejects.toMatchObject({ code: 'unavailable', message: expect.stringMatching(/which may still be running/) });
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(said.join('\n')).toMatch(/Redis is unreachable \(Redis did not answer within \d+ ms\)/);
    } finally {
      process.kill(paused, 'SIGCONT');
      await queue.close();
      connection.disconnect();
    }
  }, 60_000);

  it('a record it cannot read is that error at once, not a Redis outage ridden out for outageMs', async () => {
    const connection = connectRedis(testStack().redis!.url, 'producer');
    await new Promise((resolve) => connection.once('ready', resolve));
    const queue = new DeployQueue({ redis: connection, prefix: uniqueName('watch-torn') });
    try {
      const job = await queue.enqueue({ app: 'watched', sha: 'd'.repeat(40), ref: 'master', image: null, trigger: 'cli' });
      await connection.hset(queue.store.keys.job(job.id), 'state', '{torn');
      const said: string[] = [];
      const terminal: Terminal = { out: (t) => said.push(t), err: (t) => said.push(t), interactive: false };
      const err = await watchJob(queue.store, job.id, terminal, { showLog: false, intervalMs: 50, outageMs: 5000 }).then(() => null, (e: unknown) => e as Error & { code?: string });
      expect(err).toBeInstanceOf(SyntaxError);
      expect(said.join('\n')).not.toMatch(/Redis is unreachable/);
    } finally {
      const keys = await connection.keys(`${queue.store.keys.seq.split(':jobs:')[0]}:*`);
      if (keys.length) await connection.del(...keys);
      await queue.close();
      connection.disconnect();
    }
  }, 30_000);
});
