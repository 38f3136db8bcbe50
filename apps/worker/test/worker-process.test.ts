import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { commitVersion, freePort, type RunningProcess, startLoad, startProcess, startRedis, stopProcess, tempDir } from '@slipway/devstack/testing';
import { MAX_STALLED_COUNT } from '../src/deploy-worker.js';
import { body, waitForJob, waitForStep, workerWorld, type WorkerWorld } from './support.js';

const docker = new Docker();
const WORKER_BIN = fileURLToPath(new URL('../bin/slipway-worker.js', import.meta.url));
const startWorker = (configFile: string) => startProcess([process.execPath, WORKER_BIN, '--config', configFile], { env: { LOG_LEVEL: 'info' } });
async function within(ms: number, probe: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const appContainers = async (app: string) => docker.listContainers({ all: true, filters: { label: [`slipway.app=${app}`] } });

describe('the worker process', () => {
  let world: WorkerWorld | undefined;
  const workers: RunningProcess[] = [];
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop('SIGKILL');
    await world?.cleanup();
    world = undefined;
  });

  it('killed mid-build: the job is taken up again within 15 s of the stall and completes', async () => {
    world = await workerWorld({ buildDelay_s: 3 });
    const [app] = world.apps;
    workers.push(startWorker(world.configFile));
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    await waitForStep(world.queue, job.id, 'build');
    await new Promise((r) => setTimeout(r, 500));
    workers[0]!.child.kill('SIGKILL');
    await workers[0]!.exited;
    const killedAt = Date.now();
    workers.push(startWorker(world.configFile));
    for (;;) {
      const record = await world.queue.store.mustGet(job.id);
      if (record.attempts >= 2 || record.state === 'completed') break;
      expect(Date.now() - killedAt).toBeLessThan(16_000);
      await new Promise((r) => setTimeout(r, 200));
    }
    const done = await waitForJob(world.queue, job.id);
    expect(done.state, done.error ?? '').toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
  });

  it('killed mid-build once more than it may stall: the job is given up and ends failed (worker_lost), not active for ever', async () => {
    world = await workerWorld({ buildDelay_s: 3 });
    const [app] = world.apps;
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    for (let attempt = 1; attempt <= MAX_STALLED_COUNT + 1; attempt++) {
      const worker = startWorker(world.configFile);
      workers.push(worker);
      await within(30_000, async () => (await world!.queue.store.mustGet(job.id)).attempts >= attempt, `attempt ${attempt} running`);
      await new Promise((r) => setTimeout(r, 500));
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
    workers.push(startWorker(world.configFile));
    const done = await waitForJob(world.queue, job.id, 60_000);
    expect(done.state).toBe('failed');
    expect(done.error).toMatch(/^worker_lost: the workers running it died 3 times/);
    expect(done.attempts).toBe(MAX_STALLED_COUNT + 1);
    expect((await world.queue.store.readLog(job.id)).at(-1)).toMatch(/^error: worker_lost: /);
  });

  it('given up after its workers died, its last attempt having gone live: completed (it is what serves), the previous release removed', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    workers.push(startWorker(world.configFile));
    const first = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(world.queue, first.id)).state).toBe('completed');
    workers[0]!.child.kill('SIGKILL');
    await workers.pop()!.exited;

    const sha2 = await commitVersion(app!.repo, { version: `${app!.name} v2` });
    // Slow requests in flight on the old containers hold the drain open long enough to kill the last worker in it.
    const load = startLoad({ url: app!.url, paths: ['/cgi-bin/slow'], clients: 4, keepAlive: false });
    const second = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'cli' });
    for (let attempt = 1; attempt <= MAX_STALLED_COUNT + 1; attempt++) {
      const worker = startWorker(world.configFile);
      workers.push(worker);
      const last = attempt === MAX_STALLED_COUNT + 1;
      await within(60_000, async () => {
        const record = await world!.queue.store.mustGet(second.id);
        return record.attempts >= attempt && (!last || record.step === 'drain');
      }, `attempt ${attempt} running${last ? ', in its drain' : ''}`);
      if (!last) await new Promise((r) => setTimeout(r, 300));
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
    workers.push(startWorker(world.configFile));
    const done = await waitForJob(world.queue, second.id, 90_000);
    await load.stop();
    expect(done.state, done.error ?? '').toBe('completed');
    expect(done.error).toBeNull();
    expect((await world.queue.store.readLog(second.id)).join('\n')).toContain('this job is given up (its workers kept dying), but its last attempt went live');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v2\n`);
    await within(30_000, async () => (await appContainers(app!.name)).every((c) => c.Labels['slipway.release'] === second.id), 'only the live release\'s containers left');
  });

  it('killed mid-rollout: the app serves throughout, the dead attempt\'s containers go, the job completes', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    workers.push(startWorker(world.configFile));
    const first = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(world.queue, first.id)).state).toBe('completed');

    const sha2 = await commitVersion(app!.repo, { version: `${app!.name} v2`, variant: 'slow-start' });
    const load = startLoad({ url: app!.url, clients: 3, keepAlive: false });
    const second = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'cli' });
    await waitForStep(world.queue, second.id, 'health');
    workers[0]!.child.kill('SIGKILL');
    await workers[0]!.exited;
    expect((await appContainers(app!.name)).length).toBeGreaterThan(2);
    workers.push(startWorker(world.configFile));
    const done = await waitForJob(world.queue, second.id);
    const report = await load.stop();
    expect(done.state, done.error ?? '').toBe('completed');
    expect(done.attempts).toBe(2);
    expect(report.failures).toEqual([]);
    expect(report.socketErrors).toEqual([]);
    expect(report.lastBody).toBe(`${app!.name} v2\n`);
    const left = await appContainers(app!.name);
    expect(left.map((c) => c.Labels['slipway.release'])).toEqual([second.id, second.id]);
  });

  it('killed after its switch, then cancelled: the job ends completed (it is what is live), not cancelled, and is not rolled out again', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    workers.push(startWorker(world.configFile));
    const first = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(world.queue, first.id)).state).toBe('completed');

    const sha2 = await commitVersion(app!.repo, { version: `${app!.name} v2` });
    // Slow requests in flight on the old containers hold the drain open long enough to kill the worker in it.
    const load = startLoad({ url: app!.url, paths: ['/cgi-bin/slow'], clients: 4, keepAlive: false });
    const second = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'cli' });
    await waitForStep(world.queue, second.id, 'drain');
    workers[0]!.child.kill('SIGKILL');
    await workers[0]!.exited;
    await load.stop();
    expect((await world.queue.store.mustGet(second.id)).state).toBe('active');
    // An operator cancels the job that looks stuck: it is asked to stop, not ended as if nothing had happened.
    expect((await world.queue.cancel(second.id)).state).toBe('active');
    workers.push(startWorker(world.configFile));
    const done = await waitForJob(world.queue, second.id);
    expect(done.state, done.error ?? '').toBe('completed');
    expect(done.attempts).toBe(1);
    const log = (await world.queue.store.readLog(second.id)).join('\n');
    expect(log).toContain('an earlier attempt of this job went live');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v2\n`);
    // What the dead attempt would have drained and stopped, the previous release's containers, is gone now, not at the next deploy.
    expect(log).toMatch(/removed stray container/);
    expect((await appContainers(app!.name)).map((c) => c.Labels['slipway.release'])).toEqual([second.id, second.id]);
  });

  it('on SIGTERM stops taking jobs, lets the running one finish, and exits 0', async () => {
    world = await workerWorld({ buildDelay_s: 2 });
    const [app] = world.apps;
    const worker = startWorker(world.configFile);
    workers.push(worker);
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    await waitForStep(world.queue, job.id, 'build');
    const code = await worker.stop('SIGTERM', 120_000);
    expect(code).toBe(0);
    expect((await world.queue.store.mustGet(job.id)).state).toBe('completed');
    expect(worker.output()).toContain('letting running deploys finish');
  });

  it('carries on by itself when Redis restarts under it, losing no job', async () => {
    const dir = tempDir();
    const port = await freePort();
    let redis = await startRedis(join(dir.path, 'redis'), port);
    try {
      world = await workerWorld({ redisUrl: redis.url });
      const [app] = world.apps;
      workers.push(startWorker(world.configFile));
      const first = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
      expect((await waitForJob(world.queue, first.id)).state).toBe('completed');

      await stopProcess(redis.pid);
      await new Promise((r) => setTimeout(r, 1000));
      redis = await startRedis(join(dir.path, 'redis'), port);
      await new Promise((resolve) => (world!.queue.redis.status === 'ready' ? resolve(null) : world!.queue.redis.once('ready', resolve)));

      const sha2 = await commitVersion(app!.repo, { version: `${app!.name} v2` });
      const second = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'cli' });
      const done = await waitForJob(world.queue, second.id);
      expect(done.state, done.error ?? '').toBe('completed');
      expect(await body(`${app!.url}/`)).toBe(`${app!.name} v2\n`);
      expect((await world.queue.store.mustGet(first.id)).state).toBe('completed');
    } finally {
      await world?.cleanup();
      world = undefined;
      await stopProcess(redis.pid);
      dir.remove();
    }
  });

  it('several workers: one deploy per app at a time, different apps in parallel', async () => {
    world = await workerWorld({ apps: 2, buildDelay_s: 1 });
    const [a, b] = world.apps;
    workers.push(startWorker(world.configFile), startWorker(world.configFile));
    const shaA2 = await commitVersion(a!.repo, { version: `${a!.name} v2`, buildDelay_s: 1 });
    const jobs = [
      await world.queue.enqueue({ app: a!.name, sha: a!.repo.sha, ref: 'master', image: null, trigger: 'cli' }),
      await world.queue.enqueue({ app: b!.name, sha: b!.repo.sha, ref: 'master', image: null, trigger: 'cli' }),
    ];
    await waitForStep(world.queue, jobs[0]!.id, 'build');
    jobs.push(await world.queue.enqueue({ app: a!.name, sha: shaA2, ref: 'master', image: null, trigger: 'cli' }));
    const finals = [];
    for (const job of jobs) finals.push(await waitForJob(world.queue, job.id));
    expect(finals.map((f) => f.state)).toEqual(['completed', 'completed', 'completed']);
    const [a1, b1, a2] = finals;
    expect(Date.parse(a2!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(a1!.finishedAt!));
    const overlapAB = Math.min(Date.parse(a1!.finishedAt!), Date.parse(b1!.finishedAt!)) - Math.max(Date.parse(a1!.startedAt!), Date.parse(b1!.startedAt!));
    expect(overlapAB).toBeGreaterThan(0);
    expect(await body(`${a!.url}/`)).toBe(`${a!.name} v2\n`);
  });
});
