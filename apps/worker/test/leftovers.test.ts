import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, testStack, uniqueName } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectRedis, type Redis } from '@slipway/queue/redis';
import { sweepLeftovers } from '../src/leftovers.js';

describe('sweepLeftovers', () => {
  const tmp = tempDir('slipway-leftovers-');
  const prefix = uniqueName('leftovers');
  let redis: Redis;
  let queue: DeployQueue;

  beforeAll(async () => {
    redis = connectRedis(testStack().redis!.url, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    queue = new DeployQueue({ redis, prefix });
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await queue.close();
    redis.disconnect();
    tmp.remove();
  });

  it('removes pushed trees no waiting or running job names, and build trees of dead workers; keeps the rest', async () => {
    const workdir = tmp.path;
    const hourAgo = new Date(Date.now() - 3600_000);
    const dir = (path: string, old = true) => {
      mkdirSync(path, { recursive: true });
      if (old) utimesSync(path, hourAgo, hourAgo);
      return path;
    };
    // A push whose job was cancelled before it ran, one whose job still waits, one its hook is still queuing.
    const cancelled = dir(join(workdir, 'incoming', 'web-aaaaaaaaaaaa-000001'));
    const waiting = dir(join(workdir, 'incoming', 'web-bbbbbbbbbbbb-000002'));
    const fresh = dir(join(workdir, 'incoming', 'web-cccccccccccc-000003'), false);
    // Named through a symlink to the workdir, as a hook whose config reaches it by another path names it.
    const elsewhere = join(tmp.path, 'workdir-link');
    symlinkSync(workdir, elsewhere);
    const job = await queue.enqueue({ app: 'web', sha: 'b'.repeat(40), ref: 'master', image: null, trigger: 'git-push', sourceDir: join(elsewhere, 'incoming', 'web-bbbbbbbbbbbb-000002') });
    const gone = await queue.enqueue({ app: 'web', sha: 'a'.repeat(40), ref: 'master', image: null, trigger: 'git-push', sourceDir: cancelled });
    await queue.cancel(gone.id);
    // A build tree of a worker killed mid-build (its pid gone), and one of a live worker (this process).
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const dead = dir(join(workdir, 'builds', `web-aaaaaaaaaaaa-${deadPid}-0a0a`));
    const alive = dir(join(workdir, 'builds', `web-bbbbbbbbbbbb-${process.pid}-0b0b`));

    const lines: string[] = [];
    expect(await sweepLeftovers({ store: queue.store, workdir, log: (l) => lines.push(l) })).toEqual({ builds: 1, incoming: 1 });
    expect([cancelled, dead].map(existsSync)).toEqual([false, false]);
    expect([waiting, fresh, alive].map(existsSync)).toEqual([true, true, true]);
    expect(lines.join('\n')).toContain(`removed the pushed tree ${cancelled}`);
    await queue.cancel(job.id);
  });
});
