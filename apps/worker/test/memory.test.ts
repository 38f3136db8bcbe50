import { expect, it } from 'vitest';
import { commitVersion } from '@slipway/devstack/testing';
import { createDeployWorker } from '../src/deploy-worker.js';
import { quietLogger, waitForJob, workerWorld } from './support.js';

const DEPLOYS = 12;

/**
 * A worker whose memory grows across deploys is a bug: after warm-up, the
 * heap that survives a full GC stays flat however many deploys follow.
 * (RSS is not the measure: V8 and the allocator keep freed pages.)
 */
it(`keeps a flat heap across ${DEPLOYS} deploys`, async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  expect(gc, 'run with --expose-gc (vitest.config.ts does)').toBeTypeOf('function');
  const world = await workerWorld({ app: { replicas: 1, drain_s: 0 } });
  const [app] = world.apps;
  const worker = createDeployWorker({ config: world.config, logger: quietLogger });
  const heaps: number[] = [];
  try {
    for (let i = 0; i < DEPLOYS; i++) {
      const sha = i === 0 ? app!.repo.sha : await commitVersion(app!.repo, { version: `v${i}` });
      const job = await world.queue.enqueue({ app: app!.name, sha, ref: 'master', image: null, trigger: 'cli' });
      expect((await waitForJob(world.queue, job.id)).state).toBe('completed');
      await new Promise((r) => setTimeout(r, 300));
      gc!();
      gc!();
      heaps.push(process.memoryUsage().heapUsed / 1e6);
    }
  } finally {
    await worker.close(5000);
    await world.cleanup();
  }
  const warm = heaps[3]!;
  const last = heaps.at(-1)!;
  console.log(`worker heap after GC (MB) per deploy: ${heaps.map((h) => h.toFixed(1)).join(' ')}`);
  expect(last - warm).toBeLessThan(1.5);
}, 300_000);
