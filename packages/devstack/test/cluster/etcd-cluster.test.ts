import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { etcdLeader, startEtcdCluster, startEtcdMember, stopEtcdCluster, stopEtcdMember, waitForEtcdLeader, type EtcdClusterState } from '../../src/cluster/etcd-cluster.js';
import { isAlive } from '../../src/processes.js';
import { tempDir, uniqueName } from '../../src/testing.js';

const log = (line: string) => console.log(`[etcd-cluster] ${line}`);

describe('an etcd cluster of three members on loopback', () => {
  const dir = tempDir('slipway-etcd-cluster-');
  let cluster: EtcdClusterState;
  const prefix = `/${uniqueName('etcd-cluster')}`;

  /** etcdctl as a client given every member (what `etcd:` in slipway.yml lists), so it fails over as Slipway's does. */
  const etcdctl = async (...args: string[]) => {
    const { stdout } = await runCommand(['etcdctl', '--endpoints', cluster.endpoints.join(','), '--dial-timeout', '2s', '--command-timeout', '5s', ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    return stdout.trim();
  };
  const put = (key: string, value: string) => etcdctl('put', `${prefix}/${key}`, value);
  const get = (key: string) => etcdctl('get', '--print-value-only', `${prefix}/${key}`);
  /** A read from one member alone, served from its own copy: shows what it has caught up with. */
  const localRead = async (member: string, key: string) => {
    const url = cluster.members.find((m) => m.name === member)!.clientUrl;
    const { stdout } = await runCommand(['etcdctl', '--endpoints', url, '--consistency', 's', 'get', '--print-value-only', `${prefix}/${key}`], { env: { ...process.env, ETCDCTL_API: '3' } });
    return stdout.trim();
  };

  beforeAll(async () => {
    const started = Date.now();
    cluster = await startEtcdCluster(dir.path);
    log(`3 members up in ${Date.now() - started} ms`);
  });

  afterAll(async () => {
    if (cluster) await stopEtcdCluster(cluster);
    expect(cluster.members.map((m) => m.pid).filter((pid) => pid !== undefined && isAlive(pid))).toEqual([]);
    dir.remove();
  });

  it('has one leader that every member agrees on, and lists every member as an endpoint', async () => {
    const leader = await waitForEtcdLeader(cluster);
    expect(cluster.members.map((m) => m.name)).toContain(leader.name);
    expect(cluster.endpoints).toEqual(cluster.members.map((m) => m.clientUrl));
    expect(cluster.endpoints.every((url) => url.startsWith('http://127.0.0.1:'))).toBe(true);
    const { stdout } = await runCommand(['etcdctl', '--endpoints', cluster.endpoints.join(','), 'member', 'list'], { env: { ...process.env, ETCDCTL_API: '3' } });
    expect(stdout.trim().split('\n')).toHaveLength(3);
  });

  it('keeps serving reads and writes with a follower stopped, and the follower catches up when it is back', async () => {
    const leader = await waitForEtcdLeader(cluster);
    const follower = cluster.members.find((m) => m.name !== leader.name)!;
    await put('before', 'one');
    await stopEtcdMember(cluster, follower.name);
    expect(isAlive(follower.pid)).toBe(false);

    await put('while-down', 'two');
    expect(await get('before')).toBe('one');
    expect(await get('while-down')).toBe('two');
    expect((await etcdLeader(cluster))?.name).toBe(leader.name);

    await startEtcdMember(cluster, follower.name);
    await expect.poll(() => localRead(follower.name, 'while-down'), { timeout: 20_000 }).toBe('two');
  });

  it('elects a new leader when the leader stops, and keeps serving reads and writes', async () => {
    const leader = await waitForEtcdLeader(cluster);
    const started = Date.now();
    await stopEtcdMember(cluster, leader.name);
    const next = await waitForEtcdLeader(cluster);
    log(`new leader ${next.name} ${Date.now() - started} ms after ${leader.name} stopped`);
    expect(next.name).not.toBe(leader.name);

    await put('after-leader', 'three');
    expect(await get('after-leader')).toBe('three');
    expect(await get('before')).toBe('one');

    await startEtcdMember(cluster, leader.name);
    await expect.poll(() => localRead(leader.name, 'after-leader'), { timeout: 20_000 }).toBe('three');
  });
});
