import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isSlipwayError } from '@slipway/core/slipway-error';
import { setHostConnected, setNodeAvailability, type SimulatedHost } from '@slipway/devstack/cluster';
import { tempDir, waitFor } from '@slipway/devstack/testing';
import { rollout } from '../../src/rollout.js';
import { buildContext, buildImage, fetchText, testApp } from '../fixtures.js';
import { appServices, clusterLog, randomSha, useSwarmWorld, type SwarmWorld } from './swarm-world.js';

/**
 * An image as a distroless or `FROM scratch` one is: no /bin/sh, one
 * static binary (busybox, called by its full path, serving /www). Without
 * `healthy`, /healthz is missing: the probe waits until its timeout.
 */
async function buildShellless(app: string, version: string, options: { healthy: boolean }): Promise<string> {
  const dir = tempDir('slipway-no-shell-');
  try {
    mkdirSync(join(dir.path, 'www'));
    writeFileSync(join(dir.path, 'www', 'index.html'), `${version}\n`);
    if (options.healthy) writeFileSync(join(dir.path, 'www', 'healthz'), 'ok\n');
    copyFileSync('/usr/bin/busybox', join(dir.path, 'busybox'));
    writeFileSync(join(dir.path, 'Dockerfile'), ['FROM scratch', 'COPY busybox /busybox', 'COPY www /www', 'EXPOSE 8080', 'ENTRYPOINT ["/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]', ''].join('\n'));
    return await buildContext(dir.path, ['Dockerfile', 'busybox', 'www'], `slipway/${app}:${version}`);
  } finally {
    dir.remove();
  }
}

describe('swarm engine: images without a shell, and failures that are not the commit\'s', () => {
  let w: SwarmWorld;
  useSwarmWorld((world) => (w = world));

  it('deploys: its tasks run without Docker\'s health check (which needs /bin/sh), Slipway\'s probe gating traffic', async () => {
    const app = await testApp({ replicas: 2, drain_s: 1, stop_timeout_s: 2, health: { timeout_s: 30, interval_ms: 200 } });
    const lines: string[] = [];
    const first = await rollout({ ...w.base(app, lines), image: await buildShellless(app.name, 'v1', { healthy: true }), sha: randomSha(), job: `j1-${app.name}` });
    expect(lines.some((l) => l.includes('has no /bin/sh'))).toBe(true);
    expect(await fetchText(app.listen)).toBe('200 v1');
    const healthcheck = async () => {
      const [service] = await appServices(w.manager, app.name);
      const spec = (await w.manager.getService(service!.id).inspect()) as { Spec: { TaskTemplate: { ContainerSpec: { Healthcheck?: unknown } } } };
      return spec.Spec.TaskTemplate.ContainerSpec.Healthcheck;
    };
    expect(await healthcheck()).toEqual({ Test: ['NONE'] });
    // A rollback runs the release's registry image, which the worker's engine does not have: the manager is asked.
    await rollout({ ...w.base(app), image: await buildShellless(app.name, 'v2', { healthy: true }), sha: randomSha(), job: `j2-${app.name}` });
    await rollout({ ...w.base(app), image: first.release.image, sha: first.release.sha, job: `j3-${app.name}` });
    expect(await fetchText(app.listen)).toBe('200 v1');
    expect(await healthcheck()).toEqual({ Test: ['NONE'] });
  }, 300_000);

  it('a job taken up live whose tasks no longer pass the probe still completes, and removes what served before it', async () => {
    const app = await testApp({ replicas: 2, drain_s: 1, stop_timeout_s: 2, health: { timeout_s: 30, interval_ms: 200 } });
    await rollout({ ...w.base(app), image: await buildImage(app.name, 'p1'), sha: randomSha(), job: `p-${app.name}` });
    const image = await buildImage(app.name, 'j1');
    const sha = randomSha();
    // The first attempt switches, then its worker dies before the drain: the previous release's service is left.
    const died = await rollout({ ...w.base(app), image, sha, job: `j-${app.name}`, onStep: (step) => {
      if (step === 'drain') throw new Error('the worker died');
    } }).then(() => null, (err: Error) => err);
    expect(died?.message).toBe('the worker died');
    expect((await appServices(w.manager, app.name)).map((s) => s.release).sort()).toEqual([`j-${app.name}`, `p-${app.name}`].sort());
    expect(await fetchText(app.listen)).toBe('200 j1');

    // Taken up by the next attempt, its tasks fail the probe (here: the path it probes no longer answers 2xx).
    const lines: string[] = [];
    const result = await rollout({ ...w.base({ ...app, health: { ...app.health, path: '/nope', timeout_s: 3 } }, lines), image, sha, job: `j-${app.name}` });
    expect(lines.some((l) => l.includes('is not whole again'))).toBe(true);
    expect(result.stopped.length).toBe(1);
    expect((await appServices(w.manager, app.name)).map((s) => s.release)).toEqual([`j-${app.name}`]);
    expect(await fetchText(app.listen)).toBe('200 j1');
  }, 300_000);

  // Drained, the task ends `shutdown`; lost, Swarm cannot hear from it and it stays `running`, to be shut down.
  it.each([
    ['drained', (host: SimulatedHost, out: boolean) => setNodeAvailability(w.manager, w.cluster.swarm!.nodeIds[host.index]!, out ? 'drain' : 'active')],
    ['lost', (host: SimulatedHost, out: boolean) => setHostConnected(w.cluster.network, host, !out)],
  ] as const)('a host %s while the probe waits for a task of it: unavailable (tried again), not the commit\'s health_failed', async (how, takeOut) => {
    const app = await testApp({ replicas: 3, drain_s: 1, stop_timeout_s: 2, health: { timeout_s: 120, interval_ms: 200 } });
    const lines: string[] = [];
    const host = w.cluster.hosts[2]!;
    const outcome = rollout({ ...w.base(app, lines), image: await buildShellless(app.name, `v-${how}`, { healthy: false }), sha: randomSha(), job: `j-${how}-${app.name}` })
      .then(() => null, (err: unknown) => err);
    try {
      const onHost = new RegExp(`^task ([0-9a-z]{12}) \\(slot \\d+\\): running on ${host.address.replace(/\./g, '\\.')} `);
      const task = await waitFor(`a task running on the host to be ${how}`, () => lines.map((l) => onHost.exec(l)?.[1]).find(Boolean), { timeoutMs: 120_000, intervalMs: 100 });
      await waitFor('the probe to wait on it', () => lines.some((l) => l.startsWith(`health: ${task} attempt`)), { timeoutMs: 60_000, intervalMs: 100 });
      await takeOut(host, true);
      const err = await outcome;
      clusterLog(`rollout ended: ${(err as Error | null)?.message ?? 'completed'}`);
      expect(isSlipwayError(err, 'unavailable'), String(err)).toBe(true);
      expect((err as Error).message).toContain('Swarm stopped task');
      expect(await appServices(w.manager, app.name)).toEqual([]);
    } finally {
      await takeOut(host, false).catch(() => {});
      await outcome;
    }
  }, 300_000);
});
