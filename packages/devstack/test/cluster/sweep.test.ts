import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { clusterRemains, startCluster, stopCluster, sweepStaleClusters, type ClusterState } from '../../src/cluster/cluster.js';
import { hostDocker } from '../../src/cluster/hosts.js';
import { BASE_IMAGE } from '../../src/base-image.js';
import { isAlive, waitFor } from '../../src/processes.js';
import { followProgress } from './test-images.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'bin', 'slipway-devstack.js');
const machine = new Docker();
const log = (line: string) => console.log(`[sweep] ${line}`);

beforeAll(async () => {
  // The harness's owner is the bin, which runs from dist.
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await runCommand([process.execPath, tsc, '-p', 'tsconfig.build.json'], { cwd: root });
}, 120_000);

/** Starts `slipway-devstack cluster up` and resolves with the cluster it printed, once it is up. */
async function clusterOwner(args: string[]): Promise<{ pid: number; cluster: ClusterState; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [bin, 'cluster', 'up', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await waitFor('the cluster to be up', () => {
    if (child.exitCode !== null) throw new Error(`cluster up exited ${child.exitCode}: ${stderr}`);
    return stderr.includes('is up;');
  }, { timeoutMs: 100_000, intervalMs: 100 });
  return { pid: child.pid!, cluster: JSON.parse(stdout) as ClusterState, exited };
}

const parentOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
};

describe('a cluster whose owner was killed', () => {
  it('is swept by the next start: no process, namespace, link, cgroup, mount or directory of it is left', async () => {
    const owner = await clusterOwner(['--hosts', '2', '--etcd-members', '3']);
    const { cluster } = owner;
    const registry = cluster.registry!;

    // A running container on host 2, so that there is a shim and a container (in its own namespaces) to find.
    const tag = `sweep-${randomBytes(4).toString('hex')}`;
    const pushed = `${registry.loopback}/slipway/busybox`;
    await machine.getImage(BASE_IMAGE).tag({ repo: pushed, tag });
    try {
      await followProgress(machine, await machine.getImage(pushed).push({ tag, authconfig: {} as Docker.AuthConfig }));
    } finally {
      await machine.getImage(`${pushed}:${tag}`).remove().catch(() => {});
    }
    const host2 = hostDocker(cluster.hosts[1]!);
    await followProgress(host2, await host2.pull(`${registry.address}/slipway/busybox:${tag}`));
    const container = await host2.createContainer({ Image: `${registry.address}/slipway/busybox:${tag}`, Cmd: ['sleep', '600'], HostConfig: { Init: true } });
    await container.start();
    const containerPid = (await container.inspect()).State.Pid;
    const shimPid = parentOf(containerPid);

    const pids: Record<string, number> = {
      'container': containerPid,
      'containerd-shim': shimPid,
      'registry': registry.pid,
      'forwarder': registry.forwarderPid,
      ...Object.fromEntries(cluster.hosts.flatMap((h) => [[`${h.name} dockerd`, h.enginePid!], [`${h.name} holder`, h.holderPid]])),
      ...Object.fromEntries(cluster.etcd!.members.map((m) => [`etcd ${m.name}`, m.pid!])),
    };
    expect((readFileSync(`/proc/${shimPid}/cmdline`, 'utf8'))).toContain('containerd-shim');

    process.kill(owner.pid, 'SIGKILL');
    await owner.exited;
    // What the killed owner started runs on: only the sweep will stop it.
    expect(Object.entries(pids).filter(([, pid]) => !isAlive(pid)).map(([name]) => name)).toEqual([]);
    expect((await clusterRemains(cluster.index)).length).toBeGreaterThan(0);

    const next = await startCluster({ hosts: 1, registry: false, swarm: false, install: false, log });
    try {
      // The start swept it first (and may have taken its subnet again, being the lowest free one).
      expect(Object.entries(pids).filter(([, pid]) => isAlive(pid)).map(([name]) => name)).toEqual([]);
      if (next.index !== cluster.index) expect(await clusterRemains(cluster.index)).toEqual([]);
    } finally {
      await stopCluster(next, log);
    }
    for (const index of new Set([cluster.index, next.index])) expect(await clusterRemains(index)).toEqual([]);
    const { stdout: netns } = await runCommand(['ip', 'netns', 'list']);
    expect(netns).not.toMatch(new RegExp(`^${cluster.network.prefix}-`, 'm'));
    const { stdout: links } = await runCommand(['ip', '-o', 'link', 'show']);
    expect(links).not.toMatch(new RegExp(`: ${cluster.network.rootLink}[@:]`));
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(cluster.dir);
    const { stdout: ps } = await runCommand(['ps', '-eo', 'args']);
    expect(ps).not.toContain(cluster.dir);
    // Looked for with find, not with the harness's own search: cgroups sit at different depths per hierarchy.
    const { stdout: cgroups } = await runCommand(['find', '/sys/fs/cgroup', '-maxdepth', '6', '-type', 'd', '-name', `${cluster.network.prefix}-h*`]);
    expect(cgroups).toBe('');
  });

  it('is swept from its names alone when its directory is already gone', async () => {
    // An index nobody uses, its remains made by hand: a host namespace and the root leg, no directory.
    const used = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('slipway-cluster-')).map((n) => Number(n.slice('slipway-cluster-'.length))));
    const index = [...Array(50).keys()].map((i) => 200 + i).find((i) => !used.has(i) && !existsSync(`/run/netns/slipway-c${i}-h1`))!;
    await runCommand(['ip', 'netns', 'add', `slipway-c${index}-h1`]);
    await runCommand(['ip', 'link', 'add', `slipway-c${index}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', `slipway-c${index}-h1`]);
    expect(await clusterRemains(index)).toEqual([`netns slipway-c${index}-h1`, `link slipway-c${index}`, `mount /run/netns/slipway-c${index}-h1`]);

    expect(await sweepStaleClusters(log)).toContain(index);
    expect(await clusterRemains(index)).toEqual([]);
  });
});
