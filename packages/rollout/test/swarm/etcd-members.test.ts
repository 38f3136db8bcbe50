import { describe, expect, it } from 'vitest';
import { etcdLeader, startEtcdMember, stopEtcdMember, waitForEtcdLeader } from '@slipway/devstack/cluster';
import { EtcdReleaseStore } from '../../src/release-store.js';
import { rollout, type RolloutStepName } from '../../src/rollout.js';
import { buildImage, fetchText, testApp } from '../fixtures.js';
import { startLoad } from '../load.js';
import { clusterLog, randomSha, useSwarmWorld, type SwarmWorld } from './swarm-world.js';

/**
 * etcd as a cluster: Slipway is given every member (`etcd:` lists them);
 * one member stopped while a rollout runs, then the leader, change nothing
 * a user sees: the rollout completes, its lock and lease hold across the
 * leader change, and connection-close traffic sees no error.
 */
describe('a rollout on the swarm with a 3-member etcd', () => {
  let w: SwarmWorld;
  useSwarmWorld((world) => (w = world), { etcdMembers: 3 });
  let app: Awaited<ReturnType<typeof testApp>>;

  const rolloutLosing = async (version: string, job: string, pick: 'follower' | 'leader', at: RolloutStepName) => {
    const image = await buildImage(app.name, version);
    const etcdCluster = w.cluster.etcd!;
    const leader = await waitForEtcdLeader(etcdCluster);
    const victim = pick === 'leader' ? leader : etcdCluster.members.find((m) => m.name !== leader.name && m.pid !== undefined)!;
    let stopped: Promise<void> | undefined;
    const load = startLoad({ listen: app.listen, keepAlive: 0, close: 3, paths: ['/'] });
    const result = await rollout({
      ...w.base(app), image, sha: randomSha(), job,
      onStep: (s) => {
        if (s === at && !stopped) {
          clusterLog(`stopping etcd ${pick} ${victim.name} at the ${s} step`);
          stopped = stopEtcdMember(etcdCluster, victim.name);
        }
      },
    });
    await stopped;
    const samples = await load.stop();
    const newLeader = await etcdLeader(etcdCluster);
    clusterLog(`${pick} ${victim.name} stopped mid-rollout: done in ${result.timings.total} ms, leader now ${newLeader?.name}; ${samples.length} requests, ${samples.filter((s) => s.error || s.status !== 200).length} failed`);
    expect(samples.filter((s) => s.error || s.status !== 200).map((s) => s.error ?? s.status)).toEqual([]);
    expect(await fetchText(app.listen)).toBe(`200 ${version}`);
    expect(await new EtcdReleaseStore(w.etcd).currentRelease(app.name)).toMatchObject({ job });
    expect((await new EtcdReleaseStore(w.etcd).upstreams(app.etcd_prefix)).length).toBe(3);
    // Back to three, so the next test has a quorum to lose a member from.
    await startEtcdMember(etcdCluster, victim.name);
    await waitForEtcdLeader(etcdCluster);
    return { victim, leader, newLeader };
  };

  it('a follower stopped in the middle of a rollout: the rollout completes', async () => {
    app = await testApp({ replicas: 3, drain_s: 3, stop_timeout_s: 3 });
    await rollout({ ...w.base(app), image: await buildImage(app.name, 'v1'), sha: randomSha(), job: `j1-${app.name}` });
    await rolloutLosing('v2', `j2-${app.name}`, 'follower', 'health');
  }, 300_000);

  it('the leader stopped in the middle of a rollout: the lock and its lease survive the leader change, the rollout completes', async () => {
    expect(app, 'needs the first test').toBeDefined();
    const { victim, newLeader } = await rolloutLosing('v3', `j3-${app.name}`, 'leader', 'start');
    expect(newLeader?.name).not.toBe(victim.name);
  }, 300_000);
});
