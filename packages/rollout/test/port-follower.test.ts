import { readFile } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { etcdKeys, readUpstreams } from '@slipway/etcd/keys';
import { ownNginx, waitFor } from '@slipway/devstack/testing';
import { nginxNames } from '@slipway/router/nginx';
import { watchRouter } from '@slipway/router/watch';
import { acquireAppLock } from '../src/app-lock.js';
import { startPortFollower } from '../src/port-follower.js';
import { rollout } from '../src/rollout.js';
import { appContainers, buildImage, docker, fetchText, testApp, useRolloutWorld } from './fixtures.js';

/** The published `ip:port` of a container now, as Docker's list says it. */
async function addressNow(app: string, id: string): Promise<string | null> {
  const info = (await appContainers(app)).find((c) => c.Id === id);
  const port = info?.Ports.find((p) => p.PublicPort && p.IP && !p.IP.includes(':'));
  return info?.State === 'running' && port ? `${port.IP}:${port.PublicPort}` : null;
}

describe('the port follower (routing: upstream, one engine): a restarted container keeps its traffic', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd } = w));

  async function live() {
    const app = await testApp({ replicas: 2 });
    const image = await buildImage(app.name, 'v1');
    const result = await rollout({ app, nginx: nginx.settings, docker, etcd, image, sha: null, job: 'live' });
    const router = await watchRouter({ apps: { [app.name]: app }, nginx: nginx.settings, etcd });
    const keyOf = async (id: string) => (await readUpstreams(etcd, app.etcd_prefix)).live.find((u) => u.id === id.slice(0, 12))?.address;
    return { app, containers: result.containers, router, keyOf };
  }

  /** Restarts the container until Docker gives it another host port (it picks a free one each start; the same one can come back). */
  async function restartElsewhere(app: string, id: string, was: string): Promise<string> {
    for (let i = 0; i < 5; i++) {
      await docker.getContainer(id).restart({ t: 0 });
      const now = await addressNow(app, id);
      if (now && now !== was) return now;
    }
    throw new Error(`Docker restarted ${id.slice(0, 12)} five times on ${was}`);
  }

  it('the key follows the new host port at once, and nginx serves the app through it', async () => {
    const { app, containers, router, keyOf } = await live();
    const changes: string[] = [];
    const follower = await startPortFollower({ apps: { [app.name]: app }, docker, etcd, intervalMs: 600_000, onChange: (c) => changes.push(...Object.values(c.put)) });
    try {
      expect(follower.serving()).toEqual([app.name]);
      // Its own claim: a dns rollout would take the registrar's for a registrar that adopts its keys.
      expect(await etcd.get(etcdKeys.follower(app.name)).exists()).toBe(true);
      expect(await etcd.get(etcdKeys.registrar(app.name)).exists()).toBe(false);
      const [a, b] = containers as [typeof containers[0], typeof containers[0]];
      const moved = await restartElsewhere(app.name, a.id, a.address!);
      // Events, not the 10-minute round, bring it: within seconds.
      await waitFor(`the key of ${a.id.slice(0, 12)} on ${moved}`, async () => (await keyOf(a.id)) === moved, { timeoutMs: 5_000 });
      expect(await keyOf(b.id), 'the other container untouched').toBe(b.address);
      expect(changes).toContain(moved);
      // nginx follows etcd: every request answered, none sent to the old port.
      await waitFor('nginx to route to the new port', async () => (await readFile(nginxNames.path(nginx.settings.conf_dir, app.name), 'utf8')).includes(moved), { timeoutMs: 5_000 });
      for (let i = 0; i < 20; i++) expect(await fetchText(app.listen)).toBe('200 v1');
    } finally {
      await follower.close();
      await router.close();
    }
  });

  it('while a rollout holds the lock it writes nothing; once the lock is gone the next round follows', async () => {
    const { app, containers, router, keyOf } = await live();
    const lock = await acquireAppLock(etcd, app.name, { job: 'a rollout' });
    const follower = await startPortFollower({ apps: { [app.name]: app }, docker, etcd, intervalMs: 1_000 });
    try {
      const a = containers[0]!;
      const moved = await restartElsewhere(app.name, a.id, a.address!);
      await new Promise((r) => setTimeout(r, 2_500));
      expect(await keyOf(a.id), 'the rollout owns the keys while it holds the lock').toBe(a.address);
      await lock.release();
      await waitFor(`the key of ${a.id.slice(0, 12)} on ${moved}`, async () => (await keyOf(a.id)) === moved, { timeoutMs: 5_000 });
      expect(await etcd.get(etcdKeys.lock(app.name)).exists()).toBe(false);
    } finally {
      await lock.release();
      await follower.close();
      await router.close();
    }
  });
});
