import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '@slipway/core/docker';
import { startCluster, stopCluster, type ClusterState, hostDocker, serviceEndpoints } from '@slipway/devstack/cluster';
import { commitVersion, startLoad } from '@slipway/devstack/testing';
import { createDeployWorker, type DeployWorker } from '../src/deploy-worker.js';
import { body, quietLogger, waitForJob, workerWorld, type WorkerWorld } from './support.js';

const log = (line: string) => console.log(`[swarm] ${line}`);

describe('the deploy worker on a swarm (engine.type: swarm, three simulated hosts)', () => {
  let cluster: ClusterState | undefined;
  let world: WorkerWorld | undefined;
  let worker: DeployWorker | undefined;
  beforeAll(async () => {
    cluster = await startCluster({ log });
  }, 240_000);
  afterAll(async () => {
    await worker?.close(5000);
    await world?.cleanup();
    if (cluster) await stopCluster(cluster, log);
  }, 120_000);

  it('a deploy builds on the worker\'s engine, goes through the registry, and runs 3 replicas on 3 hosts; the next commit replaces it under load', async () => {
    const engine = { type: 'swarm', manager: cluster!.hosts[0]!.engineUrl, registry: cluster!.registry!.address };
    world = await workerWorld({ app: { replicas: 3 }, extra: { engine } });
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const manager = hostDocker(cluster!.hosts[0]!);

    const first = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    const done = await waitForJob(world.queue, first.id, 240_000);
    expect(done.state, done.error ?? '').toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);

    const sha2 = await commitVersion(app!.repo, { version: `${app!.name} v2` });
    const load = startLoad({ url: app!.url, clients: 4, keepAlive: false, paths: ['/', '/cgi-bin/slow'] });
    const second = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'cli' });
    const done2 = await waitForJob(world.queue, second.id, 240_000);
    expect(done2.state, done2.error ?? '').toBe('completed');
    // The worker runs in this process: finishedAt is on the load's clock.
    const finished = Date.parse(done2.finishedAt!);
    const [v1, v2] = [`${app!.name} v1\n`, `${app!.name} v2\n`];
    for (let i = 0; i < 100 && !((load.report.bodyTimes[v2]?.lastSent ?? 0) > finished); i++) await new Promise((r) => setTimeout(r, 50));
    const report = await load.stop();
    expect(report.failures).toEqual([]);
    expect(report.socketErrors).toEqual([]);
    // The old tasks drained by observation before their service was removed and the job ended: every
    // request the old release took (slow ones take a second) was answered before that.
    expect(report.bodyTimes[v1]!.lastEnded, 'a v1 answer ended after the job completed: the drain did not wait for it').toBeLessThanOrEqual(finished);
    expect(report.bodyTimes[v2]!.lastSent).toBeGreaterThan(finished);
    expect(report.lastBody).toBe(v2);

    const jobLog = (await world.queue.store.readLog(second.id)).join('\n');
    expect(jobLog).toContain(`registry: pushed ${cluster!.registry!.address}/slipway/${app!.name}:${sha2.slice(0, 12)}`);
    const services = await manager.listServices({ filters: { label: [`${LABELS.app}=${app!.name}`] } });
    expect(services.map((s) => s.Spec?.Labels?.[LABELS.sha])).toEqual([sha2]);
    const endpoints = await serviceEndpoints(manager, services[0]!.ID!, 8080);
    expect(new Set(endpoints.map((e) => e.address))).toEqual(new Set(cluster!.hosts.map((h) => h.address)));
  }, 600_000);
});
