/**
 * npm run bench:history — a year of job history (issue 19, part 2).
 *
 * Seeds 100,000 finished jobs over 50 apps, each with a build-sized log,
 * through JobStore (createGroups as the receiver queues, update, appendLog
 * and finish as the worker runs a job), and beside it a history of 100
 * jobs under another prefix of the same Redis. Then, against each, p95 of:
 * `slipway jobs`, `slipway jobs --app X`, `slipway status` (the CLI's own
 * main() in-process: flags, config, connections, the command, its output;
 * not Node's start-up), and the dashboard's overview (`GET /api/apps`), its
 * jobs page (`GET /api/jobs?limit=50` first and `before=` deep in history,
 * what the page asks) and `GET /api/jobs` filtered and searched. Then Redis
 * memory per job, and intake (JobStore.createGroups, the receiver's
 * queueing) during a retention sweep of the 100,000 beside intake alone.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import Docker from 'dockerode';
import { afterAll, describe, it } from 'vitest';
import { main as cli } from '@slipway/cli/main';
import { loadConfig } from '@slipway/config/load-config';
import { dockerConnection } from '@slipway/core/docker';
import { createLogger } from '@slipway/core/logger';
import { createDashboard } from '@slipway/dashboard/create-dashboard';
import { createEtcdClient } from '@slipway/etcd/client';
import { tempDir, testStack, writeTestConfig } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { JobStore } from '@slipway/queue/job-store';
import { TRIGGERS, type DeployRequest, type JobState } from '@slipway/queue/job-types';
import { connectRedis, type Redis } from '@slipway/queue/redis';

const BIG = Number(process.env.BENCH_JOBS ?? 100_000);
const SMALL = 100;
const APPS = 50;
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 60);
const DAY = 24 * 60 * 60 * 1000;
const appName = (n: number) => `app-${String(n).padStart(2, '0')}`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** A build's log as the worker writes it: checkout, a Docker build of ~30 steps (most cached), start, health, switch, drain. */
function buildLog(app: string, sha: string, n: number): string[] {
  const steps = 20 + (n % 25);
  const lines = [`checkout ${sha} of ${app} (refs/heads/master)`, `HEAD is now at ${sha.slice(0, 7)} change ${n}`];
  for (let i = 1; i <= steps; i++) {
    lines.push(`#${i + 4} [${i}/${steps}] RUN npm ci --omit=dev && npm run build --workspace ${app}-service-${i}`);
    lines.push(i % 3 ? `#${i + 4} CACHED` : `#${i + 4} DONE ${(0.1 * i).toFixed(1)}s  added 312 packages, audited 313 packages in ${i}s`);
  }
  lines.push(`#${steps + 5} exporting to image`, `#${steps + 5} naming to docker.io/slipway/${app}:${sha.slice(0, 12)} done`);
  lines.push(`start: 2 replicas of slipway/${app}:${sha.slice(0, 12)}`, 'health: 127.0.0.1:49153 answered 200 in 312 ms', 'health: 127.0.0.1:49154 answered 200 in 298 ms');
  lines.push('switch: etcd transaction committed, nginx -t ok, reload ok', 'drain: 5 s, then stopped 2 old containers', 'done');
  return lines;
}

/** `count` finished jobs over APPS apps spread over the last year, through the write path real jobs take. */
async function seed(store: JobStore, count: number): Promise<number> {
  const started = performance.now();
  const states: JobState[] = ['completed', 'completed', 'completed', 'completed', 'failed', 'superseded', 'cancelled'];
  for (let from = 0; from < count; from += 500) {
    const requests = Array.from({ length: Math.min(500, count - from) }, (_, i): DeployRequest => {
      const n = from + i;
      const app = appName(n % APPS);
      const sha = (n * 2654435761 % 2 ** 32).toString(16).padStart(8, '0').repeat(5);
      return {
        app, sha, ref: 'master', image: null, trigger: TRIGGERS[n % 7 === 0 ? 1 : n % 11 === 0 ? 3 : 0]!,
        push: { provider: 'github', delivery: `bench-${n}`, repository: { fullName: `acme/${app}`, cloneUrl: `https://github.com/acme/${app}.git`, htmlUrl: `https://github.com/acme/${app}` }, ref: 'refs/heads/master', branch: 'master', sha, before: '0'.repeat(40), pusher: 'ann', message: `Change ${n}: tune the ${app} handler\n\nLonger description of change ${n}.`, compareUrl: `https://github.com/acme/${app}/compare/${sha.slice(0, 12)}` },
      };
    });
    const [group] = await store.createGroups([{ requests }]);
    // One worker's calls per job, many jobs at once on one connection: ioredis pipelines them.
    await Promise.all(group!.records.map(async (job, i) => {
      const n = from + i;
      const at = Date.now() - (count - n) * (365 * DAY / count);
      const iso = (ms: number) => new Date(ms).toISOString();
      await store.update(job.id, { state: 'active', attempts: 1, createdAt: iso(at - 2_000), startedAt: iso(at) });
      await store.appendLog(job.id, buildLog(job.app, job.sha!, n));
      const state = states[n % states.length]!;
      await store.finish(job.id, state, {
        finishedAt: iso(at + 40_000), step: 'done',
        steps: ['queued', 'checkout', 'build', 'start', 'health', 'switch', 'drain', 'done'].map((step, k) => ({ step: step as 'queued', at: iso(at + k * 5_000) })),
        error: state === 'failed' ? 'build_failed: step 12/30 RUN npm run build exited 1' : null,
        result: state === 'completed' ? { image: `slipway/${job.app}:${job.sha!.slice(0, 12)}`, release: job.id } : null,
      });
    }));
  }
  return performance.now() - started;
}

const p = (values: number[], q: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * q))]!;

async function timed(samples: number, call: () => Promise<unknown>): Promise<{ p50: number; p95: number }> {
  await call();
  const ms: number[] = [];
  for (let i = 0; i < samples; i++) {
    const started = performance.now();
    await call();
    ms.push(performance.now() - started);
  }
  return { p50: p(ms, 0.5), p95: p(ms, 0.95) };
}

/** Webhook-sized job creations, 8 in flight, at least `ms` and until `done()`: jobs per second and p99 latency. */
async function intake(store: JobStore, ms: number, done: () => boolean = () => true): Promise<{ perSecond: number; p99: number; ms: number }> {
  const latencies: number[] = [];
  const started = performance.now();
  const end = started + ms;
  let n = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (performance.now() < end || !done()) {
      const started = performance.now();
      const sha = (n++).toString(16).padStart(40, 'a');
      await store.createGroups([{ requests: [{ app: appName(n % APPS), sha, ref: 'master', image: null, trigger: 'webhook' }] }]);
      latencies.push(performance.now() - started);
    }
  }));
  const took = performance.now() - started;
  return { perSecond: latencies.length / (took / 1000), p99: p(latencies, 0.99), ms: took };
}

interface World {
  config: string;
  store: JobStore;
  url: string;
  token: string;
  close(): Promise<void>;
}

describe('a year of job history', () => {
  const tmp = tempDir('slipway-history-bench-');
  const worlds: World[] = [];
  let redis: Redis;
  afterAll(async () => {
    for (const world of worlds) await world.close();
    redis?.disconnect();
    tmp.remove();
  });

  /** A configuration of APPS apps under its own queue prefix, its store, and a dashboard on it. */
  async function world(prefix: string): Promise<World> {
    const stack = testStack();
    const dir = join(tmp.path, prefix);
    mkdirSync(join(dir, 'nginx'), { recursive: true });
    const token = `bench-dashboard-token-${prefix}`.padEnd(40, 'x');
    const apps = Object.fromEntries(Array.from({ length: APPS }, (_, n) => [appName(n), {
      repo: `https://github.com/acme/${appName(n)}.git`, secret: 'bench-webhook-secret-0123456789', replicas: 1, port: 8080, listen: 18000 + n,
    }]));
    const file = writeTestConfig(join(dir, 'slipway.yml'), {
      stack, prefix, workdir: join(dir, 'work'), apps,
      nginx: { confDir: join(dir, 'nginx'), checkCmd: ['nginx', '-t'], reloadCmd: ['nginx', '-s', 'reload'] } as never,
      extra: { dashboard: { host: '127.0.0.1', port: 3001, token } },
    });
    const config = loadConfig({ path: file, env: {} });
    const connection = connectRedis(config.redis, 'producer');
    await new Promise((resolve) => connection.once('ready', resolve));
    const queue = new DeployQueue({ redis: connection, prefix, attempts: 3, backoffMs: 500 });
    const etcd = createEtcdClient(config.etcd);
    const dashboard = createDashboard({ config, queue, redis: connection, etcd, docker: new Docker(dockerConnection(config.docker)), logger: createLogger({ name: 'bench', level: 'silent' }) });
    const server = dashboard.serve(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const made: World = {
      config: file, token, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      store: new JobStore(connection, prefix, { retention: null }),
      async close() {
        dashboard.close();
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        await queue.close();
        connection.disconnect();
        etcd.close();
      },
    };
    worlds.push(made);
    return made;
  }

  it('answers as fast at 100,000 jobs as at 100, keeps memory bounded, and sweeps without stalling intake', async () => {
    const stack = testStack();
    redis = connectRedis(stack.redis!.url, 'worker');
    const used = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
    const small = await world('small');
    const big = await world('big');
    await seed(small.store, SMALL);
    const memoryBefore = await used();
    const seedMs = await seed(big.store, BIG);
    const memoryAfter = await used();
    console.log(`seeded ${BIG.toLocaleString('en')} jobs over ${APPS} apps (with logs) in ${(seedMs / 1000).toFixed(1)} s through JobStore; Redis used_memory ${mb(memoryBefore)} -> ${mb(memoryAfter)}: ${((memoryAfter - memoryBefore) / BIG / 1024).toFixed(2)} KiB per job`);

    const silent = { out() {}, err() {}, interactive: false };
    const deep = async (w: World) => (await w.store.page({ limit: 1, before: String(Number((await w.store.list({ limit: 1 }))[0]!.id) - Math.floor((w === big ? BIG : SMALL) * 0.9)) })).jobs[0]?.id ?? '1';
    const get = (w: World, path: string) => async () => {
      const res = await fetch(`${w.url}${path}`, { headers: { authorization: `Bearer ${w.token}` } });
      if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
      await res.arrayBuffer();
    };
    const run = (w: World, argv: string[]) => async () => {
      const code = await cli(['--config', w.config, ...argv], {}, silent);
      if (code !== 0) throw new Error(`slipway ${argv.join(' ')}: exit ${code}`);
    };
    const calls: Array<[string, (w: World, deepId: string) => () => Promise<unknown>]> = [
      ['slipway jobs', (w) => run(w, ['jobs'])],
      ['slipway jobs --app X', (w) => run(w, ['jobs', '--app', appName(7)])],
      ['slipway jobs --app X --state failed --json', (w) => run(w, ['jobs', '--app', appName(7), '--state', 'failed', '--json'])],
      ['slipway status (50 apps)', (w) => run(w, ['status'])],
      ['dashboard overview: GET /api/apps', (w) => get(w, '/api/apps')],
      ['jobs page, first: GET /api/jobs?limit=50', (w) => get(w, '/api/jobs?limit=50')],
      ['jobs page, deep (90 % back): ?before=', (w, id) => get(w, `/api/jobs?limit=50&before=${id}`)],
      ['GET /api/jobs?app=&state=failed&trigger=cli', (w) => get(w, `/api/jobs?app=${appName(7)}&state=failed&trigger=cli`)],
      ['GET /api/jobs?q=<7-hex commit prefix>', (w) => get(w, `/api/jobs?q=${(0 * 2654435761).toString(16).padStart(8, '0').slice(0, 7)}`)],
      ['GET /api/jobs?q=<message words, no match: scans 2,000>', (w) => get(w, '/api/jobs?q=no%20such%20words')],
    ];
    const rows: string[] = [];
    const deepIds = new Map([[small, await deep(small)], [big, await deep(big)]]);
    for (const [name, make] of calls) {
      const a = await timed(SAMPLES, make(small, deepIds.get(small)!));
      const b = await timed(SAMPLES, make(big, deepIds.get(big)!));
      rows.push(`| ${name} | ${a.p95.toFixed(1)} ms | ${b.p95.toFixed(1)} ms | ${(b.p95 / a.p95).toFixed(2)} | ${b.p50.toFixed(1)} ms |`);
    }
    console.log(['| call | p95 at 100 jobs | p95 at 100,000 | ratio | p50 at 100,000 |', '|---|---:|---:|---:|---:|', ...rows].join('\n'));

    // Intake alone, then during a sweep of the big history down to the default retention.
    const intakeStore = new JobStore(redis, 'intake', { retention: null });
    const alone = await intake(intakeStore, 4_000);
    const sweeper = new JobStore(redis, 'big', { retention: { keepPerApp: 200, keepDays: 30 } });
    const sweepStarted = performance.now();
    let finished = false;
    const sweeping = sweeper.sweep({ apps: Array.from({ length: APPS }, (_, n) => appName(n)) }).finally(() => (finished = true));
    const during = await intake(intakeStore, 1_000, () => finished);
    const swept = await sweeping;
    const sweepMs = performance.now() - sweepStarted;
    const left = await redis.zcard(sweeper.keys.jobIndex({}));
    const memorySwept = await used();
    console.log(`intake (JobStore.createGroups, 8 in flight): alone ${alone.perSecond.toFixed(0)} jobs/s, p99 ${alone.p99.toFixed(1)} ms; during the sweep (${(during.ms / 1000).toFixed(1)} s) ${during.perSecond.toFixed(0)} jobs/s, p99 ${during.p99.toFixed(1)} ms: ${(during.perSecond / alone.perSecond).toFixed(2)}x the rate, ${(during.p99 / alone.p99).toFixed(2)}x the p99`);
    console.log(`sweep (keep_per_app 200, keep_days 30): removed ${swept.removed.toLocaleString('en')} jobs in ${(sweepMs / 1000).toFixed(1)} s, ${swept.calls} script calls, longest call ${swept.longestCallMs.toFixed(1)} ms; ${left.toLocaleString('en')} jobs left; used_memory ${mb(memoryAfter)} -> ${mb(memorySwept)}`);
    console.log(`bench process peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
  }, 900_000);
});
