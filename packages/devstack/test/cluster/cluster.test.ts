import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { clusterRemains, startCluster, stopCluster, type ClusterState } from '../../src/cluster/cluster.js';
import { ENGINE_PORT, hostDocker, setHostConnected, startHostEngine, stopHostEngine, type HostState } from '../../src/cluster/hosts.js';
import { registryRepositories } from '../../src/cluster/registry.js';
import { serviceEndpoints, setNodeAvailability, setNodeLabels } from '../../src/cluster/swarm.js';
import { waitFor } from '../../src/processes.js';
import { followProgress, importWebImage } from './test-images.js';

const machine = new Docker();
const log = (line: string) => console.log(`[cluster] ${line}`);
/** The engine wants an X-Registry-Auth header on every push, even to a registry without auth: an empty one. */
const NO_AUTH = {} as Docker.AuthConfig;

/** RSS in MB of a process and its children (dockerd and the containerd it runs). */
function rssMb(pid: number): number {
  // A child may exit between the listing and its read (a container's shim): it then weighs nothing.
  const kb = (p: number) => {
    try {
      return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      return 0;
    }
  };
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return Math.round((kb(pid) + children.reduce((sum, child) => sum + kb(child), 0)) / 1024);
}

describe('a cluster of three simulated hosts', () => {
  let cluster: ClusterState;
  const marker = `cluster-${randomBytes(4).toString('hex')}`;
  const repo = `slipway/${marker}`;
  let machineBefore: { swarm: string; engine: string };

  beforeAll(async () => {
    const info = await machine.info();
    machineBefore = { swarm: info.Swarm.LocalNodeState, engine: info.ID };
    const started = Date.now();
    cluster = await startCluster({ log });
    log(`started in ${Date.now() - started} ms: ${JSON.stringify(cluster.timings)}`);
  });

  afterAll(async () => {
    if (cluster) {
      const started = Date.now();
      await stopCluster(cluster, log);
      log(`stopped in ${Date.now() - started} ms`);
      // Nothing left: processes, namespaces, links, cgroups, mounts, directory.
      expect(await clusterRemains(cluster.index)).toEqual([]);
    }
    for (const image of await machine.listImages({ filters: { reference: [`*/${repo}`] } })) {
      for (const tag of image.RepoTags ?? []) await machine.getImage(tag).remove({ force: true }).catch(() => {});
    }
    // The machine's own engine took no part: still the same engine, still outside any swarm.
    const info = await machine.info();
    expect({ swarm: info.Swarm.LocalNodeState, engine: info.ID }).toEqual(machineBefore);
  });

  it('runs an engine of its own on each host, reachable from the root namespace by its socket and on its private address', async () => {
    expect(cluster.network.subnet).toMatch(/^10\.77\.\d+\.0\/24$/);
    expect(cluster.hosts.map((h) => h.address)).toEqual([11, 12, 13].map((last) => `10.77.${cluster.index}.${last}`));
    const memory: string[] = [];
    for (const host of cluster.hosts) {
      const info = await hostDocker(host).info();
      expect(info.Name).toBe(host.name);
      expect(info.DockerRootDir).toBe(`${host.dir}/data`);
      expect(info.RegistryConfig.IndexConfigs[cluster.registry!.address]?.Secure).toBe(false);
      const ping = await fetch(`http://${host.address}:${ENGINE_PORT}/_ping`);
      expect(await ping.text()).toBe('OK');
      // The host reaches its subnet and nothing else.
      const { stdout } = await runCommand(['ip', '-n', host.name, '-4', 'route', 'show', 'default']);
      expect(stdout.trim()).toBe('');
      memory.push(`${host.name} ${rssMb(host.enginePid!)} MB`);
    }
    log(`engines (dockerd + containerd RSS): ${memory.join(', ')}`);
  });

  // The swarm test below runs the image this test pushes.
  it('serves one registry under two names: the machine pushes through loopback, the hosts pull at the private address, and back', async () => {
    const registry = cluster.registry!;
    const pushed = await importWebImage(machine, `${registry.loopback}/${repo}`, 'v1', marker);
    let started = Date.now();
    await followProgress(machine, await machine.getImage(`${registry.loopback}/${repo}`).push({ tag: 'v1', authconfig: NO_AUTH }));
    log(`push through loopback: ${Date.now() - started} ms`);
    expect(await registryRepositories(registry)).toContain(repo);
    const digest = (await machine.getImage(pushed).inspect()).RepoDigests.find((d) => d.startsWith(registry.loopback))!.split('@')[1];

    started = Date.now();
    await Promise.all(cluster.hosts.map(async (host) => {
      const docker = hostDocker(host);
      await followProgress(docker, await docker.pull(`${registry.address}/${repo}:v1`));
      const image = await docker.getImage(`${registry.address}/${repo}:v1`).inspect();
      expect(image.RepoDigests).toContain(`${registry.address}/${repo}@${digest}`);
    }));
    log(`pull on three hosts at ${registry.address}: ${Date.now() - started} ms`);

    // The other way: a host pushes under the private name, the machine pulls through loopback.
    const host1 = hostDocker(cluster.hosts[0]!);
    await host1.getImage(`${registry.address}/${repo}:v1`).tag({ repo: `${registry.address}/${repo}`, tag: 'v2' });
    await followProgress(host1, await host1.getImage(`${registry.address}/${repo}`).push({ tag: 'v2', authconfig: NO_AUTH }));
    await followProgress(machine, await machine.pull(`${registry.loopback}/${repo}:v2`));
    expect((await machine.getImage(`${registry.loopback}/${repo}:v2`).inspect()).RepoDigests).toContain(`${registry.loopback}/${repo}@${digest}`);
  });

  it('forms a swarm whose service, published in host mode on ports Swarm picks, answers 200 from a task on every host', async () => {
    const manager = hostDocker(cluster.hosts[0]!);
    const nodes = await manager.listNodes();
    expect(nodes.map((n) => n.Description?.Hostname).sort()).toEqual(cluster.hosts.map((h) => h.name));
    expect(nodes.filter((n) => n.ManagerStatus?.Leader).map((n) => n.Status?.Addr)).toEqual([cluster.hosts[0]!.address]);
    for (const host of cluster.hosts) await setNodeLabels(manager, cluster.swarm!.nodeIds[host.index]!, { role: 'web' });
    expect((await manager.listNodes({ filters: JSON.stringify({ 'node.label': ['role=web'] }) })).length).toBe(3);

    const service = `web-${marker}`;
    const started = Date.now();
    await manager.createService({
      Name: service,
      TaskTemplate: {
        ContainerSpec: { Image: `${cluster.registry!.address}/${repo}:v1`, Command: ['httpd', '-f', '-p', '8080', '-h', '/www'], Init: true },
        Placement: { Constraints: ['node.labels.role==web'] },
      },
      Mode: { Replicated: { Replicas: 3 } },
      // No IPVS here: no VIP, no ingress mesh; each task publishes on its own host, on a port Swarm chooses.
      EndpointSpec: { Mode: 'dnsrr', Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishMode: 'host' }] },
    } as Docker.CreateServiceOptions);
    const endpoints = await waitFor('three running tasks with a published port', async () => {
      const found = await serviceEndpoints(manager, service, 8080);
      if (found.length === 3) return found;
      const tasks = await manager.listTasks({ filters: { service: [service] } });
      throw new Error(`tasks: ${tasks.map((t) => `${t.Status?.State} ${t.Status?.Err ?? ''}`.trim()).join('; ')}`);
    }, { timeoutMs: 60_000, intervalMs: 250 });
    log(`service of 3 replicas running in ${Date.now() - started} ms: ${endpoints.map((e) => `${e.address}:${e.port}`).join(' ')}`);
    expect(new Set(endpoints.map((e) => e.address))).toEqual(new Set(cluster.hosts.map((h) => h.address)));
    for (const endpoint of endpoints) {
      const res = await fetch(`http://${endpoint.address}:${endpoint.port}/`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(`${marker}\n`);
    }
    await manager.getService(service).remove();
  });

  it('drains a host, loses it to the swarm and to the root namespace, and gets it back: engine stopped and started, link unplugged and plugged', async () => {
    const manager = hostDocker(cluster.hosts[0]!);
    const [, host2, host3] = cluster.hosts;
    const nodeState = async (host: HostState) => (await manager.getNode(cluster.swarm!.nodeIds[host.index]!).inspect()).Status.State as string;

    const availability = async (host: HostState) => (await manager.getNode(cluster.swarm!.nodeIds[host.index]!).inspect()).Spec.Availability as string;
    await setNodeAvailability(manager, cluster.swarm!.nodeIds[host3!.index]!, 'drain');
    expect(await availability(host3!)).toBe('drain');
    await setNodeAvailability(manager, cluster.swarm!.nodeIds[host3!.index]!, 'active');
    expect(await availability(host3!)).toBe('active');

    await stopHostEngine(host3!);
    await expect.poll(() => nodeState(host3!), { timeout: 30_000, interval: 250 }).toBe('down');
    await startHostEngine(host3!);
    await expect.poll(() => nodeState(host3!), { timeout: 30_000, interval: 250 }).toBe('ready');

    await setHostConnected(cluster.network, host2!, false);
    await expect(fetch(`http://${host2!.address}:${ENGINE_PORT}/_ping`, { signal: AbortSignal.timeout(1000) })).rejects.toThrow();
    await expect.poll(() => nodeState(host2!), { timeout: 30_000, interval: 250 }).toBe('down');
    await setHostConnected(cluster.network, host2!, true);
    expect(await (await fetch(`http://${host2!.address}:${ENGINE_PORT}/_ping`)).text()).toBe('OK');
    await expect.poll(() => nodeState(host2!), { timeout: 30_000, interval: 250 }).toBe('ready');
  });
});
