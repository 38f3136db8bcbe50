import { writeFile } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import { describe, it } from 'vitest';
import type { AppConfig } from '@slipway/config/types';
import { runCommand } from '@slipway/core/run-command';
import { nginxNames, renderNginxConf } from '@slipway/router/nginx';
import { ownNginx } from '@slipway/devstack/testing';
import { rollout } from '../src/rollout.js';
import { buildImage, docker, fetchText, ownDns, serveDns, testApp, useRolloutWorld, type RolloutWorld } from '../test/fixtures.js';
import { startLoad, type Sample } from '../test/load.js';

const REPLICAS = [1, 3, 10];
const RUNS = 3;
/** The keep-alive comparison of the two routing modes. */
const LOADED_REPLICAS = [1, 3, 10];
const LOADED_RUNS = 5;
const KEEP_ALIVE_LOOPS = 4;

interface Figures { switchMs: number; totalMs: number; startHealthMs: number; phases?: Record<string, number> }

/**
 * The old recipe's steps, done directly and one after the other, as the
 * seed script did: `docker run` each container and put its key, render,
 * `nginx -t`, reload, then kill the old ones. No health check, no lock,
 * no drain: what Slipway adds is measured against this.
 */
async function baselineRollout(app: AppConfig, image: string, nginx: Awaited<ReturnType<typeof ownNginx>>, etcd: Etcd3, old: string[]): Promise<Figures & { ids: string[] }> {
  const t0 = Date.now();
  const ids: string[] = [];
  const addresses: string[] = [];
  for (let i = 0; i < app.replicas; i++) {
    const { stdout } = await runCommand(['docker', 'run', '-d', '--label', `slipway.app=${app.name}`, '-p', `${app.host_ip}::${app.port}`, image]);
    const id = stdout.trim();
    const port = (await runCommand(['docker', 'inspect', '--format', `{{(index (index .NetworkSettings.Ports "${app.port}/tcp") 0).HostPort}}`, id])).stdout.trim();
    await etcd.put(`${app.etcd_prefix}/${id.slice(0, 12)}`).value(`${app.host_ip}:${port}`);
    ids.push(id);
    addresses.push(`${app.host_ip}:${port}`);
  }
  const t1 = Date.now();
  await writeFile(nginxNames.path(nginx.settings.conf_dir, app.name), renderNginxConf({ app, upstreams: addresses }));
  await runCommand([...nginx.service.checkCmd]);
  await runCommand([...nginx.service.reloadCmd]);
  const t2 = Date.now();
  for (const id of old) {
    await etcd.delete().key(`${app.etcd_prefix}/${id.slice(0, 12)}`);
    await runCommand(['docker', 'kill', id]);
  }
  const t3 = Date.now();
  await Promise.all(old.map((id) => docker.getContainer(id).remove({ force: true }).catch(() => {})));
  return { ids, switchMs: t2 - t1, totalMs: t3 - t0, startHealthMs: t1 - t0 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

describe('rollout benchmark', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let dns: Awaited<ReturnType<typeof ownDns>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd, dns } = w as Required<RolloutWorld>), { dns: true });

  it('routing: dns beside routing: upstream, under keep-alive load', async () => {
    const rows: string[] = [];
    for (const replicas of LOADED_REPLICAS) {
      for (const routing of ['upstream', 'dns'] as const) {
        const app = await testApp({ routing, replicas, health: { timeout_s: 60, interval_ms: 100 }, drain_s: 5, stop_timeout_s: 5 });
        const images = [];
        for (let v = 1; v <= LOADED_RUNS + 1; v++) images.push(await buildImage(app.name, `v${v}`));
        const serving = routing === 'dns' ? await serveDns(dns, [app]) : null;
        try {
          const base = { app, nginx: nginx.settings, dns: dns.settings, docker, etcd, sha: null };
          await rollout({ ...base, image: images[0]!, job: 'warm-up' });
          const load = startLoad({ listen: app.listen, keepAlive: KEEP_ALIVE_LOOPS, close: 0, paths: ['/', '/', '/', '/cgi-bin/slow'] });
          await new Promise((r) => setTimeout(r, 1000));
          const runs: Array<{ start: number; switchAt: number; end: number; switchMs: number; drainMs: number; totalMs: number }> = [];
          for (let k = 1; k <= LOADED_RUNS; k++) {
            const start = Date.now();
            let switchAt = 0;
            const r = await rollout({ ...base, image: images[k]!, job: `load-${k}`, onStep: (step) => { if (step === 'switch') switchAt = Date.now(); } });
            runs.push({ start, switchAt, end: Date.now(), switchMs: r.timings.switch, drainMs: r.timings.drain, totalMs: r.timings.total });
          }
          await new Promise((r) => setTimeout(r, 1000));
          const samples = await load.stop();
          // Traffic switched: from the switch step to the last response of the previous version that started after it.
          const trafficMs = runs.map((run, i) => {
            const old = samples.filter((x) => x.body === `v${i + 1}` && x.path === '/' && x.start >= run.switchAt);
            return old.length ? Math.max(...old.map((x) => x.end)) - run.switchAt : 0;
          });
          const failed = (x: Sample) => x.error !== undefined || (x.status !== undefined && (x.status < 200 || x.status > 299));
          const perRollout = runs.map((run) => samples.filter((x) => failed(x) && x.end >= run.start && x.start <= run.end).length);
          const total = samples.filter(failed).length;
          rows.push(`| ${replicas} | ${routing} | ${s(median(runs.map((r) => r.switchMs)))} | ${s(median(trafficMs))} (max ${s(Math.max(...trafficMs))}) | `
            + `${s(median(runs.map((r) => r.drainMs)))} | ${s(median(runs.map((r) => r.totalMs)))} | ${(total / LOADED_RUNS).toFixed(2)} (${perRollout.join(' ')}) | ${samples.length} |`);
        } finally {
          await serving?.close();
          const left = await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app.name}`] } });
          if (left.length) await runCommand(['docker', 'rm', '-f', ...left.map((c) => c.Id)]);
        }
      }
    }
    console.log([
      '',
      `routing: dns beside routing: upstream (${LOADED_RUNS} rollouts each under ${KEEP_ALIVE_LOOPS} keep-alive clients, 3 on /, 1 on a 1 s path; medians)`,
      '',
      '| replicas | routing | switch step | traffic on the new set after | drain | rollout | failed requests per rollout (each rollout) | requests |',
      '|---:|---|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
    ].join('\n'));
  }, 1_800_000);

  it('Slipway beside the old recipe, 1, 3 and 10 replicas', async () => {
    const rows: string[] = [];
    const phaseRows: string[] = [];
    for (const replicas of REPLICAS) {
      const app = await testApp({ replicas, health: { timeout_s: 60, interval_ms: 100 }, drain_s: 5, stop_timeout_s: 5 });
      const images = [await buildImage(app.name, 'v1'), await buildImage(app.name, 'v2')];
      const slipway: Figures[] = [];
      await rollout({ app, nginx: nginx.settings, docker, etcd, image: images[0]!, sha: null, job: 'warm-up' });
      for (let run = 0; run < RUNS; run++) {
        const r = await rollout({ app, nginx: nginx.settings, docker, etcd, image: images[(run + 1) % 2]!, sha: null, job: `bench-${run}` });
        slipway.push({ switchMs: r.timings.switch, totalMs: r.timings.total, startHealthMs: r.timings.start + r.timings.health, phases: r.timings });
      }
      await runCommand(['docker', 'rm', '-f', ...(await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app.name}`] } })).map((c) => c.Id)]);

      const base = await testApp({ replicas });
      const baseImages = [await buildImage(base.name, 'v1'), await buildImage(base.name, 'v2')];
      let old = (await baselineRollout(base, baseImages[0]!, nginx, etcd, [])).ids;
      const recipe: Figures[] = [];
      for (let run = 0; run < RUNS; run++) {
        const r = await baselineRollout(base, baseImages[(run + 1) % 2]!, nginx, etcd, old);
        old = r.ids;
        recipe.push(r);
      }
      if (!(await fetchText(base.listen)).startsWith('200 v')) throw new Error('the baseline did not serve');
      await runCommand(['docker', 'rm', '-f', ...old]);

      const sw = median(slipway.map((f) => f.switchMs));
      const tot = median(slipway.map((f) => f.totalMs));
      const sh = median(slipway.map((f) => f.startHealthMs));
      const bsw = median(recipe.map((f) => f.switchMs));
      const btot = median(recipe.map((f) => f.totalMs));
      const phase = (name: string) => s(median(slipway.map((f) => f.phases![name]!)));
      phaseRows.push(`| ${replicas} | ${phase('lock')} | ${phase('plan')} | ${phase('start')} | ${phase('health')} | ${phase('switch')} | ${phase('drain')} | ${phase('stop')} | ${phase('total')} |`);
      rows.push(`| ${replicas} | ${s(sw)} | ${s(bsw)} | ${(sw / bsw).toFixed(2)} | ${s(tot)} | ${s(btot)} | ${(tot / btot).toFixed(2)} | ${s(sh)} | ${s(tot - sh)} |`);
    }
    const rss = process.resourceUsage().maxRSS;
    console.log([
      '',
      `rollout benchmark (median of ${RUNS} rollouts each; no traffic; drain observed, so no drain_s wait)`,
      '',
      '| replicas | switch: Slipway | switch: old recipe | ratio | rollout: Slipway | rollout: old recipe | ratio | Slipway start + health | Slipway overhead beyond start + health |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
      'Slipway by phase (medians; plan = reading Docker, etcd and nginx; total also counts the release-history upkeep)',
      '',
      '| replicas | lock | plan | start | health | switch | drain | stop + remove | total |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...phaseRows,
      '',
      `bench process peak RSS: ${(rss / 1024).toFixed(0)} MiB (process.resourceUsage().maxRSS)`,
      '',
    ].join('\n'));
  }, 900_000);
});
