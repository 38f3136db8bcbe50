import { readFileSync } from 'node:fs';
import { describe, it } from 'vitest';
import type { ClusterState } from '@slipway/devstack/cluster';
import { rollout, type RolloutResult } from '../src/rollout.js';
import { buildImage, docker, fetchText, testApp } from '../test/fixtures.js';
import { clusterLog, randomSha, useSwarmWorld, type SwarmWorld } from '../test/swarm/swarm-world.js';

/*
 * `npm run bench:swarm`: push-to-live of the sample app on the swarm (3
 * replicas on 3 simulated hosts) beside the same on one host, in the same
 * run, on the same machine. A run is a fresh build (a new version, so the
 * build step and the registry both see new layers) and its rollout; the
 * swarm's rollout shows the registry transfer (save/load on the manager,
 * push) and the nodes' pull as phases of their own.
 */

const RUNS = 3;
const REPLICAS = 3;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const s = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(2)} s`);

/** Peak RSS (VmHWM) in MB of a process and its direct children. */
function peakRssMb(pid: number): number {
  const kb = (p: number) => {
    try {
      return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      return 0;
    }
  };
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch { /* gone */ }
  return Math.round((kb(pid) + children.reduce((sum, c) => sum + kb(c), 0)) / 1024);
}

function engines(cluster: ClusterState): string {
  return cluster.hosts.map((h) => `${h.name} ${h.enginePid ? peakRssMb(h.enginePid) : '?'} MB`).join(', ');
}

describe('swarm benchmark', () => {
  let w: SwarmWorld;
  useSwarmWorld((world) => (w = world));

  it(`push-to-live: ${REPLICAS} replicas on one host and on a swarm of 3, ${RUNS} runs each`, async () => {
    const rows: Record<'one host' | 'swarm', Array<{ build: number; result: RolloutResult }>> = { 'one host': [], swarm: [] };
    const apps = { 'one host': await testApp({ replicas: REPLICAS, drain_s: 2, stop_timeout_s: 2 }), swarm: await testApp({ replicas: REPLICAS, drain_s: 2, stop_timeout_s: 2 }) };
    for (let run = 0; run <= RUNS; run++) {
      for (const where of ['one host', 'swarm'] as const) {
        const app = apps[where];
        const built = Date.now();
        // Each app its own version text: the other app's identical build would come from the layer cache.
        const version = `${where === 'swarm' ? 's' : 'h'}${run}`;
        const image = await buildImage(app.name, version);
        const build = Date.now() - built;
        const base = where === 'swarm' ? w.base(app) : { app, nginx: w.nginx.settings, docker, etcd: w.etcd };
        const result = await rollout({ ...base, log: undefined, image, sha: randomSha(), job: `bench-${run}` });
        if ((await fetchText(app.listen)) !== `200 ${version}`) throw new Error(`${where}: ${version} not live`);
        // Run 0 warms up (the base layers reach the registry and the nodes once).
        if (run > 0) rows[where].push({ build, result });
        clusterLog(`${where} run ${run}: build ${s(build)}, rollout ${s(result.timings.total)} ${JSON.stringify(result.timings)}`);
      }
    }
    const phase = (where: keyof typeof rows, pick: (r: { build: number; result: RolloutResult }) => number | undefined) => {
      const xs = rows[where].map(pick).filter((x): x is number => x !== undefined);
      return xs.length ? median(xs) : undefined;
    };
    const columns: Array<[string, (r: { build: number; result: RolloutResult }) => number | undefined]> = [
      ['build', (r) => r.build],
      ['registry transfer + push', (r) => r.result.timings.push],
      ['lock + plan', (r) => r.result.timings.lock + r.result.timings.plan],
      ['start (incl. pull)', (r) => r.result.timings.start],
      ['  of which placement + pull', (r) => r.result.timings.pull],
      ['health', (r) => r.result.timings.health],
      ['switch', (r) => r.result.timings.switch],
      ['drain', (r) => r.result.timings.drain],
      ['stop', (r) => r.result.timings.stop],
      ['push-to-live (build + rollout to the switch)', (r) => r.build + r.result.timings.total - r.result.timings.drain - r.result.timings.stop],
      ['total (build + rollout)', (r) => r.build + r.result.timings.total],
    ];
    const lines = [
      `swarm benchmark: ${REPLICAS} replicas, medians of ${RUNS} runs after a warm-up (sample app, ~2 MB image on busybox)`,
      `| phase | one host | swarm (3 hosts) |`,
      `|---|---|---|`,
      ...columns.map(([name, pick]) => `| ${name} | ${s(phase('one host', pick))} | ${s(phase('swarm', pick))} |`),
      `peak RSS: this process (Slipway's rollout + the tests) ${Math.round(process.resourceUsage().maxRSS / 1024)} MB; host engines (dockerd + containerd) ${engines(w.cluster)}`,
    ];
    console.log(lines.join('\n'));
  }, 1_200_000);
});
