import { describe, expect, it } from 'vitest';
import { setNodeAvailability } from '@slipway/devstack/cluster';
import { waitFor } from '@slipway/devstack/testing';
import { watchRouter } from '@slipway/router/watch';
import { EtcdReleaseStore } from '../../src/release-store.js';
import { rollout } from '../../src/rollout.js';
import { startTaskWatcher } from '../../src/swarm/task-watcher.js';
import { buildImage, fetchText, testApp } from '../fixtures.js';
import { startLoad, type Sample } from '../load.js';
import { clusterLog, randomSha, useSwarmWorld, type SwarmWorld } from './swarm-world.js';

const KEEP_ALIVE_LOOPS = 2;
const CLOSE_LOOPS = 4;
/** From the drain to the keys naming only the other hosts: Swarm's reschedule, the new task's start and first health check, a watcher round. */
const FOLLOW_WITHIN_MS = 30_000;
const CLIENT_LAG_MS = 250;

describe('tasks move, etcd follows', () => {
  let w: SwarmWorld;
  useSwarmWorld((world) => (w = world));

  it('a host drained with the app live: Swarm reschedules, the task watcher rewrites the keys, nginx keeps answering', async () => {
    const app = await testApp({ replicas: 3, drain_s: 5, stop_timeout_s: 5, health: { timeout_s: 30, interval_ms: 200 } });
    await rollout({ ...w.base(app), image: await buildImage(app.name, 'v1'), sha: randomSha(), job: `j1-${app.name}` });
    const store = new EtcdReleaseStore(w.etcd);
    const lost = w.cluster.hosts[2]!;
    expect((await store.upstreams(app.etcd_prefix)).map((u) => u.address.split(':')[0]).sort()).toEqual(w.cluster.hosts.map((h) => h.address).sort());

    const apps = { [app.name]: app };
    // When the router's reloads were confirmed: the last key's reload, which resets idle keep-alive
    // connections (nginx 1.22), comes a moment after the key itself, and is part of the move.
    const routed: number[] = [];
    const routes: string[] = [];
    const router = await watchRouter({ apps, nginx: w.nginx.settings, etcd: w.etcd, log: (l) => {
      if (l.includes('now routes to')) {
        routed.push(Date.now());
        routes.push(l);
      }
      clusterLog(`router: ${l}`);
    } });
    const rewrites: number[] = [];
    const watcher = await startTaskWatcher({ apps, manager: w.manager, etcd: w.etcd, log: clusterLog, onChange: (c) => rewrites.push(c.at) });
    try {
      expect(watcher.serving()).toEqual([app.name]);
      const load = startLoad({ listen: app.listen, keepAlive: KEEP_ALIVE_LOOPS, close: CLOSE_LOOPS, paths: ['/'] });
      await new Promise((r) => setTimeout(r, 1000));
      const drained = Date.now();
      await setNodeAvailability(w.manager, w.cluster.swarm!.nodeIds[lost.index]!, 'drain');
      let followed = 0;
      const moved = await waitFor('the keys to leave the drained host', async () => {
        const keys = await store.upstreams(app.etcd_prefix);
        followed = Date.now();
        return keys.length === 3 && keys.every((u) => !u.address.startsWith(`${lost.address}:`)) && keys.map((u) => u.address);
      }, { timeoutMs: FOLLOW_WITHIN_MS, intervalMs: 100 });
      // And nginx serving them, all three (on a loaded machine its reload may come seconds later; the watcher
      // removes the drained task first and adds its replacement later, each a reload): the load runs past it.
      const listed = (line: string) => line.split('now routes to ')[1]!.split(' (')[0]!.split(', ');
      await waitFor('nginx to route to the moved keys', () => routes.some((l) => moved.every((a) => listed(l).includes(a))), { timeoutMs: FOLLOW_WITHIN_MS, intervalMs: 100 });
      await new Promise((r) => setTimeout(r, 2000));
      const samples = await load.stop();

      const failed = samples.filter((s) => s.error || (s.status !== undefined && (s.status < 200 || s.status > 299)));
      const byKind = (kind: Sample['kind']) => samples.filter((s) => s.kind === kind).length;
      console.log([
        `host ${lost.address} drained: keys followed after ${followed - drained} ms (${rewrites.length} rewrite${rewrites.length === 1 ? '' : 's'} by the watcher)`,
        `  ${samples.length} requests (${byKind('keep-alive')} keep-alive, ${byKind('close')} connection-close); failed: ${failed.length} `
          + `(${failed.map((s) => `${s.kind} ${s.error ?? s.status}${s.reused ? ' reused' : ''} at +${s.start - drained} ms`).join(', ') || 'none'})`,
      ].join('\n'));
      // Only what was in flight on the lost host, or reset by the move's reloads (at most one request per loop), between the drain and nginx serving the rewrite.
      expect(failed.length).toBeLessThanOrEqual(KEEP_ALIVE_LOOPS + CLOSE_LOOPS);
      const servedMove = Math.max(followed, ...routed);
      for (const s of failed) expect(s.end >= drained && s.start <= servedMove + CLIENT_LAG_MS, `failure outside the move: ${JSON.stringify(s)}`).toBe(true);
      expect(samples.filter((s) => s.start > followed + CLIENT_LAG_MS && s.status === 200).length).toBeGreaterThan(10);
      for (let i = 0; i < 6; i++) expect(await fetchText(app.listen)).toBe('200 v1');
    } finally {
      await watcher.close();
      await router.close();
      await setNodeAvailability(w.manager, w.cluster.swarm!.nodeIds[lost.index]!, 'active').catch(() => {});
    }
  }, 300_000);
});
