import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '@slipway/config/load-config';
import { createFixtureRepo, tempDir, testStack, uniqueName } from '@slipway/devstack/testing';
import { DeployQueue } from './deploy-queue.js';
import { deployApp } from './deploy-requests.js';
import { connectRedis, type Redis } from './redis.js';

describe('deployApp', () => {
  const temp = tempDir('slipway-deploy-requests-');
  const prefix = uniqueName('dr');
  let redis: Redis;
  let queue: DeployQueue;
  let repo: { url: string; sha: string };

  beforeAll(async () => {
    repo = await createFixtureRepo(temp.path, { version: 'v1', name: 'app' });
    redis = connectRedis(testStack().redis!.url, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    queue = new DeployQueue({ redis, prefix });
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await queue.close();
    redis.disconnect();
    temp.remove();
  });

  it('keeps a branch named in full (refs/heads/master) as the branch\'s name, as a webhook\'s job does, so that pushes of it are matched', async () => {
    const config = parseConfig(JSON.stringify({
      redis: testStack().redis!.url, workdir: join(temp.path, 'work'), queue: { prefix },
      apps: { hello: { repo: repo.url, branch: 'master', secret: 'x'.repeat(16) } },
    }), { file: null, env: {} });
    const app = config.apps.hello!;
    for (const ref of ['refs/heads/master', 'master']) {
      const job = await deployApp({ config, queue, app, ref });
      expect(job).toMatchObject({ sha: repo.sha, ref: 'master', trigger: 'cli' });
      expect(job.chosenAfter).toBeDefined();
    }
    // A commit asked for by id names no branch.
    expect(await deployApp({ config, queue, app, ref: repo.sha.slice(0, 10) })).toMatchObject({ sha: repo.sha, ref: null });
  });
});
