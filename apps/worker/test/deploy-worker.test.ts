import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { commitVersion, freePort, startLoad, testStack, waitFor } from '@slipway/devstack/testing';
import { createEtcdClient } from '@slipway/etcd/client';
import { etcdKeys } from '@slipway/etcd/keys';
import { UnrecoverableError, Worker } from 'bullmq';
import { bullJobId, QUEUE_NAME, STALLED_OUT } from '@slipway/queue/deploy-queue';
import { connectRedis } from '@slipway/queue/redis';
import { createDeployWorker, type DeployWorker } from '../src/deploy-worker.js';
import { body, quietLogger, waitForJob, waitForStep, workerWorld, type WorkerWorld } from './support.js';

const docker = new Docker();

describe('the deploy worker', () => {
  let world: WorkerWorld | undefined;
  let worker: DeployWorker | undefined;
  afterEach(async () => {
    await worker?.close(5000);
    await world?.cleanup();
    worker = undefined;
    world = undefined;
  });

  it('checks out, builds and rolls out a commit; the next one goes live under load with no failed request', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const first = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    const done = await waitForJob(world.queue, first.id);
    expect(done.state, done.error ?? '').toBe('completed');
    expect(done.steps.map((s) => s.step)).toEqual(['queued', 'checkout', 'build', 'start', 'health', 'switch', 'drain', 'done']);
    // A first release has nothing to drain.
    expect(done.result).toEqual({ image: expect.any(String), release: first.id });
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);

    const sha2 = await commitVersion(app!.repo, { version: `${app!.name} v2` });
    const load = startLoad({ url: app!.url, clients: 4, keepAlive: false, paths: ['/', '/cgi-bin/slow'] });
    const second = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'cli' });
    const done2 = await waitForJob(world.queue, second.id);
    expect(done2.state).toBe('completed');
    // The slow requests (a second each) were waited for: none was left open when the old containers stopped.
    expect(done2.result?.drain).toEqual({ ms: expect.any(Number), open: 0 });
    await new Promise((r) => setTimeout(r, 300));
    const report = await load.stop();
    expect(report.failures).toEqual([]);
    expect(report.socketErrors).toEqual([]);
    expect(Object.keys(report.bodies).sort()).toEqual([`${app!.name} v1\n`, `${app!.name} v2\n`]);
    expect(report.lastBody).toBe(`${app!.name} v2\n`);

    const log = (await world.queue.store.readLog(second.id)).join('\n');
    expect(log).toContain(`==> checkout ${sha2.slice(0, 12)}`);
    expect(log).toContain('==> build');
    expect(log).toContain('==> rollout');
    const containers = await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app!.name}`] } });
    expect(containers.map((c) => c.Labels['slipway.sha'])).toEqual([sha2, sha2]);
  });

  it.each([
    ['', false],
    ['; one an operator cancelled meanwhile is asked to stop, not ended unseen (it may have gone live), and ends cancelled', true],
  ])('a job BullMQ gave up on whose give-up was lost (the worker that saw it stopped) is ended by the next sweep, not left running for ever%s', async (_, cancel) => {
    world = await workerWorld();
    const [app] = world.apps;
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    // What a lost give-up leaves: the record running (as its dead attempt left it), BullMQ's job failed for its stalls.
    const connection = connectRedis(world.config.redis, 'worker');
    const taker = new Worker(QUEUE_NAME, null, { connection, prefix: world.config.queue.prefix, autorun: false });
    try {
      const taken = await taker.getNextJob('test-token');
      expect(taken?.id).toBe(bullJobId(job.id));
      await world.queue.store.update(job.id, { state: 'active', startedAt: new Date().toISOString() });
      await taken!.moveToFailed(new UnrecoverableError(STALLED_OUT), 'test-token');
    } finally {
      await taker.close();
      connection.disconnect();
    }
    expect((await world.queue.store.mustGet(job.id)).state).toBe('active');
    if (cancel) expect((await world.queue.cancel(job.id)).state).toBe('active');
    worker = createDeployWorker({ config: world.config, logger: quietLogger, abandonedAfterMs: 0 });
    const done = await waitForJob(world.queue, job.id, 60_000);
    if (cancel) {
      expect(done).toMatchObject({ state: 'cancelled', error: 'cancelled by request' });
      return;
    }
    expect(done.state).toBe('failed');
    expect(done.error).toMatch(/^worker_lost: the workers running it died/);
  });

  it('keeps with the job how many connections a drain that ran out of drain_s left open', async () => {
    world = await workerWorld({ app: { replicas: 1, drain_s: 0.2 } });
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const first = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(world.queue, first.id)).state).toBe('completed');

    // A connection to the old container that stays open past drain_s (0.2 s): it is counted, then stopped with it.
    const [old] = await docker.listContainers({ filters: { label: [`slipway.app=${app!.name}`] } });
    const published = old!.Ports.find((p) => p.PublicPort)!;
    const held = connect(published.PublicPort, published.IP);
    await once(held, 'connect');
    held.on('error', () => {});
    const sha2 = await commitVersion(app!.repo, { version: `${app!.name} v2` });
    const second = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'cli' });
    const done = await waitForJob(world.queue, second.id);
    held.destroy();
    expect(done.state, done.error ?? '').toBe('completed');
    expect(done.result?.drain).toEqual({ ms: expect.any(Number), open: 1 });
    expect(done.result!.drain!.ms).toBeGreaterThanOrEqual(200);
    const log = (await world.queue.store.readLog(second.id)).join('\n');
    expect(log).toContain(`drained: drain_s (0.2 s) elapsed with 1 connection open (${published.IP}:${published.PublicPort}: 1)`);
  });

  it('an attempt that loses its queue lock (cut off from Redis) stops and leaves the job to its re-run, which completes it', async () => {
    world = await workerWorld({ buildDelay_s: 4 });
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    await waitForStep(world.queue, job.id, 'build');
    // What a worker cut off from Redis past lockDuration finds: its lock gone (expired, or the job taken by another).
    await world.queue.redis.del(`${world.config.queue.prefix}:deploys:${bullJobId(job.id)}:lock`);
    const done = await waitForJob(world.queue, job.id, 120_000);
    expect(done.state, done.error ?? '').toBe('completed');
    expect(done.attempts).toBe(2);
    const log = (await world.queue.store.readLog(job.id)).join('\n');
    expect(log).toContain('stopped: this attempt lost its queue lock');
    expect(log).not.toContain('cancelled');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
  });

  it('a worker closed past its grace (or hurried: a second SIGTERM) stops its running deploy at a safe point and puts it back in the queue; another worker completes it', async () => {
    world = await workerWorld({ buildDelay_s: 8 });
    const [app] = world.apps;
    const first = createDeployWorker({ config: world.config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    await waitForStep(world.queue, job.id, 'build');
    const closing = Date.now();
    // A long grace, ended by hurry(): the deploy is still given its safe point.
    setTimeout(() => first.hurry(), 300);
    await first.close(60_000);
    // The grace, then the build's stop: not the build's 8 s, nor BullMQ's wait for the job to end.
    expect(Date.now() - closing).toBeLessThan(6000);
    expect((await world.queue.store.get(job.id))!.state).toBe('waiting');
    expect((await world.queue.store.readLog(job.id)).join('\n')).toContain('stopped: this attempt was stopped by its worker\'s shutdown; the job runs again');
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const done = await waitForJob(world.queue, job.id, 120_000);
    expect(done.state, done.error ?? '').toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
  });

  it('an attempt that loses only its app lease (its queue lock still held) stops and goes back in the queue; the job completes', async () => {
    world = await workerWorld({ buildDelay_s: 3 });
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    await waitForStep(world.queue, job.id, 'build');
    // What a worker whose renewals went unanswered past the lease finds: the app in someone else's hands, for a while.
    await world.queue.redis.set(world.queue.store.keys.appLock(app!.name), 'another-job:token', 'PX', 2000);
    const done = await waitForJob(world.queue, job.id, 120_000);
    expect(done.state, done.error ?? '').toBe('completed');
    const log = (await world.queue.store.readLog(job.id)).join('\n');
    expect(log).toContain('stopped: this attempt lost its app lease');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
  });

  it('a burst of five pushes ends with the fifth live; the waiting ones are superseded by it', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    const shas = [app!.repo.sha];
    for (let v = 2; v <= 5; v++) shas.push(await commitVersion(app!.repo, { version: `${app!.name} v${v}` }));
    const jobs = [];
    for (const sha of shas) jobs.push(await world.queue.enqueue({ app: app!.name, sha, ref: 'master', image: null, trigger: 'webhook' }));
    worker = createDeployWorker({ config: world.config, logger: quietLogger, concurrency: 4 });
    const finals = [];
    for (const job of jobs) finals.push(await waitForJob(world.queue, job.id));
    const fifth = finals[4]!;
    expect(fifth.state, fifth.error ?? '').toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v5\n`);
    for (const f of finals.slice(0, 4)) {
      expect(['superseded', 'completed']).toContain(f.state);
      if (f.state === 'superseded') {
        expect(f.supersededBy).toBe(fifth.id);
        expect((await world.queue.store.readLog(f.id)).join('\n')).toContain(`superseded by job ${fifth.id}`);
      }
    }
    expect(finals.slice(1, 4).every((f) => f.state === 'superseded')).toBe(true);
  });

  it('does not retry a failed build, and its error names the failing step', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    const sha = await commitVersion(app!.repo, { version: 'broken', variant: 'broken-build' });
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha, ref: 'master', image: null, trigger: 'cli' });
    const failed = await waitForJob(world.queue, job.id);
    expect(failed.state).toBe('failed');
    expect(failed.attempts).toBe(1);
    expect(failed.error).toMatch(/Step \d+\/\d+ : RUN .* failed/);
    expect((await world.queue.store.readLog(job.id)).join('\n')).toContain('asset pipeline failed');
  });

  it('retries with backoff while etcd is unreachable, then reports it', async () => {
    world = await workerWorld({ extra: { etcd: ['http://127.0.0.1:9'], worker: { attempts: 2, backoff_ms: 200, concurrency: 1 } } });
    const [app] = world.apps;
    // The retry (its first attempt started) spends its attempt at once, not waiting for etcd first (see below).
    worker = createDeployWorker({ config: world.config, logger: quietLogger, etcdWaitMs: 0 });
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    const failed = await waitForJob(world.queue, job.id);
    expect(failed.state).toBe('failed');
    expect(failed.attempts).toBe(2);
    expect(failed.error).toMatch(/etcd/i);
    const log = (await world.queue.store.readLog(job.id)).join('\n');
    expect(log).toContain('will retry (attempt 2 of 2)');
    expect(await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app!.name}`] } })).toEqual([]);
  });

  it('a job an earlier attempt started, taken up while etcd is unreachable, is neither superseded (it may be what serves) nor built (a newer one may be)', async () => {
    world = await workerWorld({ extra: { etcd: ['http://127.0.0.1:9'], worker: { attempts: 1, backoff_ms: 200, concurrency: 1 } } });
    const [app] = world.apps;
    const sha2 = await commitVersion(app!.repo, { version: `${app!.name} v2` });
    const taken = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    // What a worker that died after starting it left: the record says an attempt began.
    await world.queue.store.update(taken.id, { startedAt: new Date().toISOString(), attempts: 1 });
    const newer = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'cli' });
    // Not waited for (see the next test): its attempt is spent at once.
    worker = createDeployWorker({ config: world.config, logger: quietLogger, etcdWaitMs: 0 });
    const ended = await waitForJob(world.queue, taken.id);
    expect(ended).toMatchObject({ state: 'failed', error: expect.stringContaining('etcd could not be read') });
    const log = (await world.queue.store.readLog(taken.id)).join('\n');
    expect(log).toContain('etcd could not be read to learn whether an earlier attempt of this job went live');
    // Nothing was done until etcd could say: a retry that went on could go live over a newer job deployed meanwhile.
    expect(log).not.toMatch(/checkout|building/);
    await waitForJob(world.queue, newer.id);
  });

  it('a job an earlier attempt started waits for etcd to say whether that attempt went live without spending an attempt, and deploys once it can', async () => {
    // etcd behind a port that refuses connections until the test opens it.
    const port = await freePort();
    const etcdUrl = new URL(testStack().etcd!.url);
    world = await workerWorld({ extra: { etcd: [`http://127.0.0.1:${port}`], worker: { attempts: 1, backoff_ms: 200, concurrency: 1 } } });
    const [app] = world.apps;
    const taken = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    await world.queue.store.update(taken.id, { startedAt: new Date().toISOString(), attempts: 1 });
    worker = createDeployWorker({ config: world.config, logger: quietLogger, etcdWaitMs: 120_000 });
    await waitFor('the job to wait for etcd', async () => (await world!.queue.store.readLog(taken.id)).join('\n').includes('the job waits'));
    expect((await world.queue.store.get(taken.id))?.state).toBe('waiting');

    const sockets = new Set<Socket>();
    const relay = createServer((client) => {
      const upstream = connect(Number(etcdUrl.port), etcdUrl.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => { client.destroy(); upstream.destroy(); });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => relay.listen(port, '127.0.0.1', resolve));
    try {
      // One attempt allowed, none spent on the wait: it deploys.
      const ended = await waitForJob(world.queue, taken.id);
      expect(ended).toMatchObject({ state: 'completed', attempts: 2 });
      expect((await world.queue.store.readLog(taken.id)).join('\n')).not.toContain('will retry');
    } finally {
      await worker.close(5000);
      worker = undefined;
      relay.close();
      for (const socket of sockets) socket.destroy();
    }
  });

  it('a job an earlier attempt started does not take a live release of its id but of another commit for its own (a Redis that lost its data counts job ids from 1 again): it deploys; a worker that starts numbers new jobs past the live releases', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    await world.queue.store.update(job.id, { startedAt: new Date().toISOString(), attempts: 1 });
    // What the Redis before this one left live in etcd: a release of a job of the same id, another commit.
    const etcd = createEtcdClient(world.config.etcd);
    try {
      await etcd.put(etcdKeys.release(app!.name)).value(JSON.stringify({ sha: 'f'.repeat(40), image: `slipway/${app!.name}:ffffffffffff`, job: job.id, at: new Date().toISOString() }));
      worker = createDeployWorker({ config: world.config, logger: quietLogger });
      expect(await waitForJob(world.queue, job.id)).toMatchObject({ state: 'completed' });
      expect((await world.queue.store.readLog(job.id)).join('\n')).not.toContain('an earlier attempt of this job went live');
      expect(JSON.parse((await etcd.get(etcdKeys.release(app!.name)).string())!)).toMatchObject({ sha: app!.repo.sha, job: job.id });
      expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
      // A worker that starts numbers new jobs past the releases etcd names live.
      await etcd.put(etcdKeys.release(world.apps[0]!.name)).value(JSON.stringify({ sha: app!.repo.sha, image: `slipway/${app!.name}:x`, job: '987654', at: new Date().toISOString() }));
      await worker.close();
      worker = createDeployWorker({ config: world.config, logger: quietLogger });
      await waitFor('job ids raised past the live release', async () => Number(await world!.queue.store.lastJobId()) >= 987654);
    } finally {
      etcd.close();
    }
  });

  it('an image it built that is gone when its containers are to start (pruned by another rollout meanwhile) is built again on a retry, not blamed on the commit', async () => {
    world = await workerWorld({ extra: { worker: { attempts: 2, backoff_ms: 200, concurrency: 1 } } });
    const [app] = world.apps;
    // Another rollout holds the app's etcd lock: this one builds, then waits for it.
    const etcd = createEtcdClient(world.config.etcd);
    const lease = etcd.lease(30);
    try {
      await lease.put(etcdKeys.lock(app!.name)).value('{"job":"another"}');
      worker = createDeployWorker({ config: world.config, logger: quietLogger });
      const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
      await waitFor('the rollout to wait for the lock', async () => (await world!.queue.store.readLog(job.id)).some((line) => line.startsWith('waiting for the rollout lock')), { timeoutMs: 120_000 });
      await docker.getImage(`slipway/${app!.name}:${app!.repo.sha.slice(0, 12)}`).remove({ force: true });
      await lease.revoke();
      const done = await waitForJob(world.queue, job.id);
      expect(done.state, done.error ?? '').toBe('completed');
      expect(done.attempts).toBe(2);
      expect((await world.queue.store.readLog(job.id)).join('\n')).toContain('was gone from the Docker engine when its containers were to start');
      expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
    } finally {
      await lease.revoke().catch(() => {});
      etcd.close();
    }
  });

  it('deploys two apps in parallel', async () => {
    world = await workerWorld({ apps: 2, buildDelay_s: 2 });
    const [a, b] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger, concurrency: 2 });
    const ja = await world.queue.enqueue({ app: a!.name, sha: a!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    const jb = await world.queue.enqueue({ app: b!.name, sha: b!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    const [ra, rb] = [await waitForJob(world.queue, ja.id), await waitForJob(world.queue, jb.id)];
    expect([ra.state, rb.state]).toEqual(['completed', 'completed']);
    const overlap = Math.min(Date.parse(ra.finishedAt!), Date.parse(rb.finishedAt!)) - Math.max(Date.parse(ra.startedAt!), Date.parse(rb.startedAt!));
    expect(overlap).toBeGreaterThan(1000);
  });

  it('a deploy that ends does not wake a job of its app waiting out a retry\'s backoff', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    // A job in its backoff, as a retryable failure leaves it: waiting, its BullMQ job delayed for a minute.
    const backingOff = await world.queue.enqueue({ app: app!.name, sha: await commitVersion(app!.repo, { version: 'backing off' }), ref: 'master', image: null, trigger: 'cli' });
    await world.queue.bull.getJob(bullJobId(backingOff.id)).then((j) => j?.remove());
    await world.queue.bull.add('deploy', { id: backingOff.id }, { jobId: bullJobId(backingOff.id), delay: 60_000 });
    const next = await world.queue.enqueue({ app: app!.name, sha: await commitVersion(app!.repo, { version: 'deployed meanwhile' }), ref: 'master', image: null, trigger: 'cli' });
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    expect((await waitForJob(world.queue, next.id)).state).toBe('completed');
    await new Promise((r) => setTimeout(r, 1500));
    expect(await (await world.queue.bull.getJob(bullJobId(backingOff.id)))!.getState()).toBe('delayed');
    expect((await world.queue.store.mustGet(backingOff.id)).state).toBe('waiting');
    await world.queue.cancel(backingOff.id);
  });

  it('a cancel that found a waiting job briefly taken (its app busy) ends it within seconds, not when the app frees', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    // Another deploy holds the app: the job is taken, finds it busy and is put back, every second.
    await world.queue.redis.set(world.queue.store.keys.appLock(app!.name), 'another-job:attempt', 'PX', 60_000);
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    // What cancel leaves when it finds the job taken: the stop key (no running attempt hears the event).
    await world.queue.redis.set(world.queue.store.keys.cancel(job.id), '1', 'EX', 3600);
    const ended = await waitForJob(world.queue, job.id, 10_000);
    expect(ended).toMatchObject({ state: 'cancelled', error: 'cancelled while waiting', startedAt: null });
    await world.queue.redis.del(world.queue.store.keys.appLock(app!.name));
  });

  it('a job that waited for its busy app is marked waiting no more once it has the app (a retry\'s backoff is not cut short by another job\'s end)', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    await world.queue.redis.set(world.queue.store.keys.appLock(app!.name), 'another-job:attempt', 'PX', 1500);
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    await waitFor('the job waiting for its app', async () => (await world!.queue.redis.exists(world!.queue.store.keys.waitingForApp(job.id))) === 1);
    await waitForStep(world.queue, job.id, 'checkout');
    expect(await world.queue.redis.exists(world.queue.store.keys.waitingForApp(job.id))).toBe(0);
    expect((await waitForJob(world.queue, job.id)).state).toBe('completed');
  });

  /** A job of a commit that never gets healthy, running its health check (60 s): a cancel is what ends it. */
  async function runningUnhealthy() {
    const made = await workerWorld({ app: { health: { path: '/healthz', timeout_s: 60, interval_ms: 100 } } });
    world = made;
    const [app] = made.apps;
    const sha = await commitVersion(app!.repo, { version: 'never healthy', variant: 'unhealthy' });
    worker = createDeployWorker({ config: made.config, logger: quietLogger });
    const job = await made.queue.enqueue({ app: app!.name, sha, ref: 'master', image: null, trigger: 'cli' });
    await waitForStep(made.queue, job.id, 'health');
    return { world: made, app: app!, job };
  }

  it('cancels a running job before the switch and removes its containers', async () => {
    const { world, app, job } = await runningUnhealthy();
    await world.queue.cancel(job.id);
    const ended = await waitForJob(world.queue, job.id, 30_000);
    expect(ended.state).toBe('cancelled');
    expect(await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app.name}`] } })).toEqual([]);
  });

  it('a cancel published while the worker\'s subscription was reconnecting still stops the job', async () => {
    const { world, job } = await runningUnhealthy();
    // The subscription's connection cut, and the cancel sent before it is back (it reconnects after 100 ms): its message is lost.
    const redis = world.queue.redis;
    const name = `slipway-worker:${world.config.queue.prefix}:events`;
    const line = ((await redis.call('client', 'list', 'type', 'pubsub')) as string).split('\n').find((l) => l.includes(` name=${name} `));
    expect(line, 'the worker\'s subscription').toBeDefined();
    await redis.call('client', 'kill', 'id', /\bid=(\d+)/.exec(line!)![1]!);
    await world.queue.cancel(job.id);
    const ended = await waitForJob(world.queue, job.id, 30_000);
    expect(ended.state).toBe('cancelled');
  });

  it('a cancel that arrives after the switch does not hide the failure that follows it', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    // nginx's reload, which runs after etcd switched, says it began and fails two seconds later.
    const reloading = join(world.dir, 'reloading');
    const config = { ...world.config, nginx: { ...world.config.nginx, reload_cmd: ['sh', '-c', 'touch "$0"; sleep 2; exit 1', reloading] } };
    worker = createDeployWorker({ config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha: await commitVersion(app!.repo, { version: 'past the switch' }), ref: 'master', image: null, trigger: 'cli' });
    for (let i = 0; i < 1200 && !existsSync(reloading); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(reloading), 'the reload began').toBe(true);
    await world.queue.cancel(job.id);
    const ended = await waitForJob(world.queue, job.id, 30_000);
    expect([ended.state, ended.error]).toEqual(['failed', expect.stringMatching(/^nginx reload failed/)]);
    expect((await world.queue.store.readLog(job.id)).join('\n')).not.toContain('cancelled: nothing of this deploy went live');
  });

  it('a cancel during nginx\'s check of the candidate, before the switch, cancels the job though the check then fails', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    // nginx's check of the new file (the step `switch` begins with it) says it began and refuses two seconds later.
    const checking = join(world.dir, 'checking');
    const config = { ...world.config, nginx: { ...world.config.nginx, check_cmd: ['sh', '-c', 'touch "$0"; sleep 2; echo "nginx: [emerg] refused for the test" >&2; exit 1', checking] } };
    worker = createDeployWorker({ config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    for (let i = 0; i < 1200 && !existsSync(checking); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(checking), 'the check began').toBe(true);
    await world.queue.cancel(job.id);
    const ended = await waitForJob(world.queue, job.id, 30_000);
    expect([ended.state, ended.error]).toEqual(['cancelled', 'cancelled by request']);
    expect((await world.queue.store.readLog(job.id)).join('\n')).toContain('cancelled: nothing of this deploy went live');
  });
});
