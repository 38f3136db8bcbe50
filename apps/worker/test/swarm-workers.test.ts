import { once } from 'node:events';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '@slipway/core/docker';
import { startCluster, stopCluster, type ClusterState, hostDocker, serviceEndpoints } from '@slipway/devstack/cluster';
import { commitVersion, startLoad, startProcess, type RunningProcess } from '@slipway/devstack/testing';
import { createEtcdClient } from '@slipway/etcd/client';
import { etcdKeys } from '@slipway/etcd/keys';
import { body, waitForJob, waitForStep, workerWorld, type WorkerWorld } from './support.js';

const WORKER_BIN = fileURLToPath(new URL('../bin/slipway-worker.js', import.meta.url));
const startWorker = (configFile: string) => startProcess([process.execPath, WORKER_BIN, '--config', configFile], { env: { LOG_LEVEL: 'info' } });
const log = (line: string) => console.log(`[swarm] ${line}`);

describe('two worker processes on a swarm', () => {
  let cluster: ClusterState | undefined;
  let world: WorkerWorld | undefined;
  const worlds: WorkerWorld[] = [];
  const workers: RunningProcess[] = [];
  beforeAll(async () => {
    cluster = await startCluster({ log });
  }, 240_000);
  afterAll(async () => {
    for (const w of workers.splice(0)) await w.stop('SIGKILL');
    await world?.cleanup();
    for (const w of worlds.splice(0)) await w.cleanup();
    if (cluster) await stopCluster(cluster, log);
  }, 120_000);

  it('two apps deploy in parallel; one worker killed -9 mid-rollout: the other finishes both, no orphaned service, no stale lock', async () => {
    const engine = { type: 'swarm', manager: cluster!.hosts[0]!.engineUrl, registry: cluster!.registry!.address };
    world = await workerWorld({ apps: 2, app: { replicas: 2 }, extra: { engine, worker: { concurrency: 1 } } });
    const [a, b] = world.apps;
    const manager = hostDocker(cluster!.hosts[0]!);
    const services = async (app: string) => (await manager.listServices({ filters: { label: [`${LABELS.app}=${app}`] } })).map((s) => s.Spec?.Labels?.[LABELS.release]);
    workers.push(startWorker(world.configFile), startWorker(world.configFile));

    const firsts = [
      await world.queue.enqueue({ app: a!.name, sha: a!.repo.sha, ref: 'master', image: null, trigger: 'cli' }),
      await world.queue.enqueue({ app: b!.name, sha: b!.repo.sha, ref: 'master', image: null, trigger: 'cli' }),
    ];
    const [a1, b1] = [await waitForJob(world.queue, firsts[0]!.id, 300_000), await waitForJob(world.queue, firsts[1]!.id, 300_000)];
    expect([a1!.state, b1!.state], `${a1!.error} ${b1!.error}`).toEqual(['completed', 'completed']);
    const overlap = Math.min(Date.parse(a1!.finishedAt!), Date.parse(b1!.finishedAt!)) - Math.max(Date.parse(a1!.startedAt!), Date.parse(b1!.startedAt!));
    log(`first deploys of two apps by two workers overlapped ${overlap} ms`);
    expect(overlap).toBeGreaterThan(0);

    // Each worker takes one job (concurrency 1); both are past the creation of their service when one worker dies.
    const seconds = [
      await world.queue.enqueue({ app: a!.name, sha: await commitVersion(a!.repo, { version: `${a!.name} v2`, variant: 'slow-start' }), ref: 'master', image: null, trigger: 'cli' }),
      await world.queue.enqueue({ app: b!.name, sha: await commitVersion(b!.repo, { version: `${b!.name} v2`, variant: 'slow-start' }), ref: 'master', image: null, trigger: 'cli' }),
    ];
    await Promise.all(seconds.map((j) => waitForStep(world!.queue, j.id, 'start', 180_000)));
    workers[0]!.child.kill('SIGKILL');
    await workers[0]!.exited;
    const killedAt = Date.now();
    const orphans = (await services(a!.name)).length + (await services(b!.name)).length;
    log(`worker 1 killed with both rollouts started: ${orphans} services of the two apps at that moment`);

    const finals = [await waitForJob(world.queue, seconds[0]!.id, 300_000), await waitForJob(world.queue, seconds[1]!.id, 300_000)];
    log(`both finished ${Date.now() - killedAt} ms after the kill; attempts ${finals.map((f) => f.attempts).join(', ')}`);
    expect(finals.map((f) => f.state), finals.map((f) => f.error).join(' ')).toEqual(['completed', 'completed']);
    expect(await body(`${a!.url}/`)).toBe(`${a!.name} v2\n`);
    expect(await body(`${b!.url}/`)).toBe(`${b!.name} v2\n`);
    // Nothing orphaned: each app has the service of its last job only; no rollout lock is left.
    expect(await services(a!.name)).toEqual([seconds[0]!.id]);
    expect(await services(b!.name)).toEqual([seconds[1]!.id]);
    const etcd = createEtcdClient(world.config.etcd);
    try {
      for (const app of [a!, b!]) expect(await etcd.get(etcdKeys.lock(app.name)).exists()).toBe(false);
    } finally {
      etcd.close();
    }
  }, 900_000);

  it('killed -9 mid-drain: the next attempt takes up its live service, drains the old one and completes, with no failed request', async () => {
    const engine = { type: 'swarm', manager: cluster!.hosts[0]!.engineUrl, registry: cluster!.registry!.address };
    const own = await workerWorld({ app: { replicas: 2, drain_s: 30 }, extra: { engine } });
    worlds.push(own);
    const [app] = own.apps;
    const manager = hostDocker(cluster!.hosts[0]!);
    const services = async () => (await manager.listServices({ filters: { label: [`${LABELS.app}=${app!.name}`] } })).map((s) => s.Spec?.Labels?.[LABELS.release]);
    const first = startWorker(own.configFile);
    workers.push(first);
    const v1 = await own.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(own.queue, v1.id, 300_000)).state).toBe('completed');

    // A connection held open to a task of v1 keeps the drain going (drain_s 30) until it is closed.
    const [old] = await serviceEndpoints(manager, (await manager.listServices({ filters: { label: [`${LABELS.app}=${app!.name}`] } }))[0]!.ID!, 8080);
    const held = connect(old!.port, old!.address);
    held.on('error', () => {});
    await once(held, 'connect');
    const load = startLoad({ url: app!.url, clients: 3, keepAlive: false, paths: ['/', '/cgi-bin/slow'] });
    const v2 = await own.queue.enqueue({ app: app!.name, sha: await commitVersion(app!.repo, { version: `${app!.name} v2` }), ref: 'master', image: null, trigger: 'cli' });
    await waitForStep(own.queue, v2.id, 'drain', 300_000);
    first.child.kill('SIGKILL');
    await first.exited;
    held.destroy();
    expect((await services()).sort()).toEqual([v1.id, v2.id].sort());

    workers.push(startWorker(own.configFile));
    const done = await waitForJob(own.queue, v2.id, 300_000);
    const report = await load.stop();
    expect(done.state, done.error ?? '').toBe('completed');
    expect(done.attempts).toBe(2);
    const jobLog = (await own.queue.store.readLog(v2.id)).join('\n');
    expect(jobLog).toContain(`service slipway-${app!.name}-${v2.id} of this job is live already`);
    // Taken up with the image that went live: not checked out, built or published again (another host would build other bits).
    const second = jobLog.slice(jobLog.indexOf('an earlier attempt of this job went live'));
    expect(second).toMatch(/^an earlier attempt of this job went live \(\S+@sha256:[0-9a-f]{64}\) and stopped before its end: taken up where it stopped, with that image, not built again/);
    expect(second).not.toMatch(/==> (checkout|build)|registry: (pushed|moved|the manager has)/);
    expect(await services()).toEqual([v2.id]);
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v2\n`);
    expect(report.failures).toEqual([]);
    expect(report.socketErrors).toEqual([]);
  }, 900_000);
});
