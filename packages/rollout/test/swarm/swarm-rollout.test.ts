import type Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { isSlipwayError } from '@slipway/core/slipway-error';
import { serviceEndpoints } from '@slipway/devstack/cluster';
import { rollout, type RolloutResult } from '../../src/rollout.js';
import { appStatus } from '../../src/status.js';
import { buildImage, docker, fetchText, testApp } from '../fixtures.js';
import { startLoad, type Sample } from '../load.js';
import { appServices, randomSha, useSwarmWorld, type SwarmWorld } from './swarm-world.js';

const KEEP_ALIVE_LOOPS = 4;
const CLOSE_LOOPS = 4;
/** As in zero-downtime.test.ts: nginx 1.22 may reset one request per kept-alive connection at its reload; a rollout reloads once. */
const MAX_KEEP_ALIVE_FAILURES = KEEP_ALIVE_LOOPS;
const CLIENT_LAG_MS = 250;

/** What nginx answers on `listen`, `n` times (each a fresh connection): the versions seen. */
async function versions(listen: string, n: number): Promise<string[]> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) seen.add(await fetchText(listen));
  return [...seen];
}

describe('swarm engine: blue/green by service on three simulated hosts', () => {
  let w: SwarmWorld;
  useSwarmWorld((world) => (w = world));
  let app: Awaited<ReturnType<typeof testApp>>;
  const sha1 = randomSha();
  const sha2 = randomSha();
  let first: RolloutResult;
  let second: RolloutResult;

  it('deploys through the registry to 3 replicas spread over the hosts, then a new version under load: every response 2xx, the old service gone', async () => {
    app = await testApp({ replicas: 3, drain_s: 5, stop_timeout_s: 5, health: { timeout_s: 30, interval_ms: 200 } });
    const [v1, v2] = [await buildImage(app.name, 'v1'), await buildImage(app.name, 'v2')];
    const lines: string[] = [];
    first = await rollout({ ...w.base(app, lines), image: v1, sha: sha1, job: `j1-${app.name}` });
    // Pinned to the digest pushed: the tag can move (the same commit built again), the release cannot.
    expect(first.release.image).toMatch(new RegExp(`^${w.engine.registry!.replace(/\./g, '\\.')}/slipway/${app.name}:${sha1.slice(0, 12)}@sha256:[0-9a-f]{64}$`));
    expect(lines.some((l) => l.startsWith('registry: pushed'))).toBe(true);
    expect(await versions(app.listen, 6)).toEqual(['200 v1']);
    const [service1] = await appServices(w.manager, app.name);
    expect(service1!.name).toBe(`slipway-${app.name}-j1-${app.name}`);
    const endpoints = await serviceEndpoints(w.manager, service1!.id, app.port);
    expect(new Set(endpoints.map((e) => e.address)), 'one task on each host').toEqual(new Set(w.cluster.hosts.map((h) => h.address)));
    expect(first.containers.map((c) => c.address).sort()).toEqual(endpoints.map((e) => `${e.address}:${e.port}`).sort());

    const load = startLoad({ listen: app.listen, keepAlive: KEEP_ALIVE_LOOPS, close: CLOSE_LOOPS, paths: ['/', '/cgi-bin/slow'] });
    await new Promise((r) => setTimeout(r, 1500));
    const window = { switchStart: 0, switchEnd: 0 };
    second = await rollout({
      ...w.base(app), image: v2, sha: sha2, job: `j2-${app.name}`,
      onStep: (s) => {
        if (s === 'switch') window.switchStart = Date.now();
        if (s === 'drain') window.switchEnd = Date.now();
      },
    });
    await new Promise((r) => setTimeout(r, 1500));
    const samples = await load.stop();

    const non2xx = samples.filter((s) => s.status !== undefined && (s.status < 200 || s.status > 299));
    const closeErrors = samples.filter((s) => s.kind === 'close' && s.error);
    const keepAliveErrors = samples.filter((s) => s.kind === 'keep-alive' && s.error);
    const afterSwitch = samples.filter((s) => s.start > window.switchEnd + CLIENT_LAG_MS && s.status === 200);
    const oldAfterSwitch = afterSwitch.filter((s) => s.path === '/' && s.body?.trim() !== 'v2');
    const byKind = (kind: Sample['kind']) => samples.filter((s) => s.kind === kind).length;
    console.log([
      `swarm rollout under load: ${samples.length} requests (${byKind('keep-alive')} keep-alive, ${byKind('close')} connection-close)`,
      `  non-2xx: ${non2xx.length}; connection-close errors: ${closeErrors.length}; keep-alive errors: ${keepAliveErrors.length} (${keepAliveErrors.map((s) => s.error).join(', ') || 'none'})`,
      `  switch window ${window.switchEnd - window.switchStart} ms; timings ${JSON.stringify(second.timings)}; drain ${JSON.stringify(second.drain)}`,
    ].join('\n'));
    expect(non2xx.map((s) => `${s.status} ${s.path}`)).toEqual([]);
    expect(closeErrors.map((s) => `${s.error} ${s.path}`)).toEqual([]);
    for (const s of keepAliveErrors) {
      expect(s.reused, 'a keep-alive failure on a fresh connection is not the reload race').toBe(true);
      expect(s.end >= window.switchStart - 50 && s.start <= window.switchEnd + CLIENT_LAG_MS, 'keep-alive failure outside the switch').toBe(true);
    }
    expect(keepAliveErrors.length).toBeLessThanOrEqual(MAX_KEEP_ALIVE_FAILURES);
    expect(oldAfterSwitch.map((s) => s.body)).toEqual([]);
    expect(samples.filter((s) => s.path === '/cgi-bin/slow' && s.status === 200).length).toBeGreaterThan(0);
    expect(second.drain?.drained).toBe(true);

    expect(await versions(app.listen, 9)).toEqual(['200 v2']);
    const services = await appServices(w.manager, app.name);
    expect(services.map((s) => s.release)).toEqual([`j2-${app.name}`]);
    expect(second.stopped).toEqual([service1!.id]);
    const endpoints2 = await serviceEndpoints(w.manager, services[0]!.id, app.port);
    expect(new Set(endpoints2.map((e) => e.address)).size).toBe(3);

    // status: each task with its node, endpoint, service and health; etcd, the tasks and nginx agree.
    const status = await appStatus({ app, nginx: w.nginx.settings, docker, etcd: w.etcd, manager: w.manager });
    expect(status.drift).toEqual([]);
    expect(status.nginx.inSync).toBe(true);
    expect(status.containers.map((c) => ({ node: c.node, address: c.address, service: c.service, healthy: c.healthy })).sort((a, b) => a.node!.localeCompare(b.node!)))
      .toEqual(endpoints2.map((e) => ({ node: e.address, address: `${e.address}:${e.port}`, service: services[0]!.name, healthy: true })).sort((a, b) => a.node.localeCompare(b.node)));
  }, 300_000);

  it('a release whose health never passes fails with the reason, leaves no service behind and the old release serving', async () => {
    expect(second, 'needs the first test').toBeDefined();
    const bad = await buildImage(app.name, 'v3', 'unhealthy');
    const lines: string[] = [];
    const quick = { ...app, health: { ...app.health, timeout_s: 6 } };
    const began = Date.now();
    const err = await rollout({ ...w.base(quick, lines), image: bad, sha: randomSha(), job: `j3-${app.name}` }).catch((e: unknown) => e);
    console.log(`bad release failed after ${Date.now() - began} ms: ${(err as Error).message.split('\n')[0]}`);
    expect(isSlipwayError(err, 'health_failed'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/healthz|2xx/);
    expect(lines.some((l) => l.startsWith('removed new service'))).toBe(true);
    expect((await appServices(w.manager, app.name)).map((s) => s.release)).toEqual([`j2-${app.name}`]);
    expect(await versions(app.listen, 6)).toEqual(['200 v2']);
  }, 300_000);

  it('rolls back to a release whose image is in the registry: no build, no transfer', async () => {
    expect(first, 'needs the first test').toBeDefined();
    // The worker's engine no longer has it: only the registry does.
    await docker.getImage(`slipway/${app.name}:v1`).remove({ force: true }).catch(() => {});
    // And its tag has moved since (the same commit built again): v2's image pushed under it. The release is pinned to v1's digest.
    const repo = `${w.engine.registry}/slipway/${app.name}`;
    await w.manager.getImage(`${repo}:${sha2.slice(0, 12)}`).tag({ repo, tag: sha1.slice(0, 12) });
    const auth = w.engine.registry_auth;
    const pushing = (await w.manager.getImage(`${repo}:${sha1.slice(0, 12)}`).push({ authconfig: auth ? { username: auth.username, password: auth.password, serveraddress: w.engine.registry } : {} } as Docker.ImagePushOptions)) as unknown as NodeJS.ReadableStream;
    await new Promise((resolve, reject) => w.manager.modem.followProgress(pushing, (err: Error | null) => (err ? reject(err) : resolve(undefined))));
    const lines: string[] = [];
    const back = await rollout({ ...w.base(app, lines), image: first.release.image, sha: sha1, job: `j4-${app.name}` });
    expect(lines.filter((l) => l.startsWith('registry:'))).toEqual([`registry: ${first.release.image} is in the registry already; the nodes pull it`]);
    expect(back.release.image).toBe(first.release.image);
    expect(await versions(app.listen, 6)).toEqual(['200 v1']);
    expect((await appServices(w.manager, app.name)).map((s) => s.release)).toEqual([`j4-${app.name}`]);

    // An image deploy naming the registry by that tag (now v2's): pinned to the digest the tag names, as a pushed image is.
    const byTag = `${repo}:${sha1.slice(0, 12)}`;
    const lines5: string[] = [];
    const tagged = await rollout({ ...w.base(app, lines5), image: byTag, sha: null, job: `j5-${app.name}` });
    expect(tagged.release.image).toMatch(new RegExp(`^${byTag.replace(/[.]/g, '\\.')}@sha256:[0-9a-f]{64}$`));
    expect(lines5.filter((l) => l.startsWith('registry:'))).toEqual([`registry: ${byTag} (${tagged.release.image.split('@')[1]}) is in the registry already; the nodes pull it`]);
    expect(await versions(app.listen, 6)).toEqual(['200 v2']);
  }, 300_000);
});
