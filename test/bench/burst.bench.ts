/**
 * npm run bench:burst — many apps at once: a burst of signed pushes to 100
 * different apps (1 replica each, upstream routing), taken by two worker
 * processes at concurrency 4, with a keep-alive client on every app. Run
 * twice in the same run on the same apps: with `router.batch_ms: 0` (every
 * switch reloads nginx on its own: the behaviour before batching) and with
 * the default 200 ms. For each: time from the first webhook to every app
 * serving its new commit, deploys per minute, nginx reloads (counted by a
 * wrapper around reload_cmd), the shortest gap between two reloads, and the
 * keep-alive requests reset across all apps. Also the peak RSS of the
 * receiver and both workers.
 *
 * A third burst runs with two tiers (`nginx.front`, batch_ms 200): the
 * clients connect to a front nginx that deploys never reload, and each
 * app's back listens on a unix socket. `slipway router --once` moves the
 * apps there before it (not measured); the front's reloads are counted too.
 *
 * BENCH_APPS (default 100) changes the number of apps; BENCH_GAP_MS
 * (default 100) the pause of each app's client between requests.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { afterAll, describe, it } from 'vitest';
import { loadConfig } from '@slipway/config/load-config';
import { commitVersion, createFixtureRepo, type FixtureRepo, freePort, startGitHttpServer, isolatedNginx, startProcess, writeTestConfig, type RunningProcess, tempDir, testAppName, testStack, uniqueName, waitFor } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { waitForJob } from '@slipway/queue/follow-job';
import { connectRedis } from '@slipway/queue/redis';
import { githubPush, githubRequest, send, type RepoDescription } from '../support/webhooks.js';

const APPS = Number(process.env.BENCH_APPS ?? 100);
/**
 * Pause of each app's client between an answer and its next request. Back
 * to back, 100 clients (each request a fork of the sample app's busybox
 * httpd) kept the 2-core machine's load average above 100 by themselves,
 * and the deploys measured that contention. 100 ms: up to 1,000 requests a
 * second over 100 apps, each connection in use all through the burst.
 */
const GAP_MS = Number(process.env.BENCH_GAP_MS ?? 100);
const SECRET = 'bench-webhook-secret-0123456789';
const bin = (app: string) => fileURLToPath(new URL(`../../apps/${app}/bin/slipway-${app}.js`, import.meta.url));
const cli = fileURLToPath(new URL('../../apps/cli/bin/slipway.js', import.meta.url));
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const peakMb = (pid: number) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

/** reload_cmd wrapped: one line (a timestamp) per reload asked of nginx, then nginx itself. */
const RELOAD_COUNTER = `
import { appendFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
const [log, ...argv] = process.argv.slice(2);
appendFileSync(log, Date.now() + '\\n');
process.exit(spawnSync(argv[0], argv.slice(1), { stdio: 'inherit' }).status ?? 1);
`;

interface BenchApp {
  name: string;
  repo: FixtureRepo;
  described: RepoDescription;
  listen: number;
  sha: string;
}

/**
 * One keep-alive client per app, each sending its next request GAP_MS
 * after the last was answered, on the same connection (the way a busy
 * client's pool does): every error without a response is a reset a reload
 * caused. Notes when each app first
 * answers `want`, and whether it ever answered anything else afterwards.
 */
function keepAliveClients(apps: readonly BenchApp[], want: (app: BenchApp) => string) {
  let running = true;
  const report = { requests: 0, resets: 0, non2xx: 0, failures: [] as string[], firstNew: new Map<string, number>(), oldAfterNew: 0 };
  const loops = apps.map(async (app) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    for (let sent = 0; running; sent++) {
      if (sent > 0 && GAP_MS > 0) await new Promise((resolve) => setTimeout(resolve, GAP_MS));
      const answer = await new Promise<{ status: number; body: string } | null>((resolve) => {
        const req = request({ host: '127.0.0.1', port: app.listen, path: '/', agent, timeout: 10_000 }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.on('error', () => resolve(null));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', () => resolve(null));
        req.end();
      });
      report.requests++;
      if (!answer) {
        report.resets++;
        continue;
      }
      if (answer.status < 200 || answer.status > 299) {
        report.non2xx++;
        // What a failed answer was (nginx's 502 page, the app's own error…), for the phase's report.
        if (report.failures.length < 10) report.failures.push(`${new Date().toISOString().slice(11, 23)} ${app.name} ${answer.status} ${answer.body.replace(/\s+/g, ' ').slice(0, 80)}`);
      } else if (answer.body === want(app)) {
        if (!report.firstNew.has(app.name)) report.firstNew.set(app.name, Date.now());
      } else if (report.firstNew.has(app.name)) report.oldAfterNew++;
    }
    agent.destroy();
  });
  return {
    report,
    async stop() {
      running = false;
      await Promise.all(loops);
      return report;
    },
  };
}

describe('bench: a burst of pushes to many apps', () => {
  const tmp = tempDir();
  const processes: RunningProcess[] = [];
  const docker = new Docker();
  const apps: BenchApp[] = [];
  afterAll(async () => {
    for (const p of processes) await p.stop();
    const names = new Set(apps.map((a) => a.name));
    const all = await docker.listContainers({ all: true, filters: { label: ['slipway.app'] } }).catch(() => []);
    await Promise.all(all.filter((c) => names.has(c.Labels['slipway.app']!)).map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
    tmp.remove();
  });

  it(`${APPS} apps, batch_ms 0 beside batch_ms 200, and 200 with two tiers`, { timeout: 90 * 60_000 }, async () => {
    mkdirSync(join(tmp.path, 'git', 'acme'), { recursive: true });
    // The front nginx's workers run as another user: they must reach the back's sockets under it.
    chmodSync(tmp.path, 0o755);
    const git = await startGitHttpServer({ root: join(tmp.path, 'git') });
    const nginx = await isolatedNginx(tmp.path);
    const front = await isolatedNginx(join(tmp.path, 'front'));
    /** What nginx logged at warn level or above from a byte offset of its error log on, and where the log ends now. */
    const nginxErrorsSince = (offset: number) => {
      const text = readFileSync(join(nginx.prefix, 'error.log'), 'utf8');
      return { lines: text.slice(offset).split('\n').filter((l) => / \[(warn|error|crit|alert|emerg)\] /.test(l)), end: text.length };
    };
    const counter = join(tmp.path, 'reload-counter.mjs');
    const reloads = join(tmp.path, 'reloads.log');
    const frontReloads = join(tmp.path, 'front-reloads.log');
    writeFileSync(counter, RELOAD_COUNTER);
    writeFileSync(reloads, '');
    writeFileSync(frontReloads, '');
    const reloadTimes = (log: string) => readFileSync(log, 'utf8').split('\n').filter(Boolean).map(Number);

    for (let i = 0; i < APPS; i++) {
      const name = testAppName();
      const repo = await createFixtureRepo(join(tmp.path, 'git', 'acme'), { version: `${name} v1`, name });
      const described = { fullName: `acme/${name}`, cloneUrl: `${git.url}/acme/${name}.git`, htmlUrl: `${git.url}/acme/${name}` };
      // Each app its own port: 100 random picks of free ports collide now and then (two apps on one listen).
      let listen = await freePort();
      while (apps.some((other) => other.listen === listen)) listen = await freePort();
      apps.push({ name, repo, described, listen, sha: repo.sha });
    }
    const receiverPort = await freePort();
    const receiverMetrics = await freePort();
    const receiverUrl = `http://127.0.0.1:${receiverPort}`;
    const prefix = uniqueName('burst');
    const configFor = (batchMs: number, name = `slipway-${batchMs}`) => writeTestConfig(join(tmp.path, `${name}.yml`), {
      stack: testStack(), nginx, prefix, workdir: join(tmp.path, 'work'),
      // drain_s as configured by default (5 s): at a load of 150 a request takes over a second, and a shorter
      // drain (1 s, before 3 December) stopped old containers with a request still on them (nginx's 502s).
      apps: Object.fromEntries(apps.map((a) => [a.name, {
        repo: a.described.cloneUrl, secret: SECRET, replicas: 1, listen: `127.0.0.1:${a.listen}`, stop_timeout_s: 2, health: { interval_ms: 50 },
      }])),
      extra: {
        receiver: { host: '127.0.0.1', port: receiverPort, metrics: `127.0.0.1:${receiverMetrics}` },
        worker: { concurrency: 4, attempts: 3, backoff_ms: 500 },
        router: { batch_ms: batchMs },
      },
    });
    const patchReload = (file: string, tiers = false) => {
      const raw = JSON.parse(readFileSync(file, 'utf8')) as { nginx: { reload_cmd: string[]; front?: unknown } };
      raw.nginx.reload_cmd = [process.execPath, counter, reloads, ...raw.nginx.reload_cmd];
      if (tiers) {
        raw.nginx.front = {
          conf_dir: front.confDir, check_cmd: front.checkCmd, reload_cmd: [process.execPath, counter, frontReloads, ...front.reloadCmd], socket_dir: join(tmp.path, 'sockets'),
        };
      }
      writeFileSync(file, JSON.stringify(raw, null, 2));
      return file;
    };
    const configs = { unbatched: patchReload(configFor(0)), batched: patchReload(configFor(200)), tiers: patchReload(configFor(200, 'slipway-tiers'), true) };
    const config = loadConfig({ path: configs.batched, env: {} });
    const redis = connectRedis(config.redis, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    const queue = new DeployQueue({ redis, prefix: config.queue.prefix });

    const receiver = startProcess([process.execPath, bin('receiver'), '--config', configs.batched], { env: { LOG_LEVEL: 'warn' } });
    processes.push(receiver);
    await waitFor('the receiver', async () => (await fetch(`${receiverUrl}/healthz`).catch(() => null))?.ok, { timeoutMs: 20_000 });
    let workers: RunningProcess[] = [];
    const peaks = { workers: 0 };
    const startWorkers = async (file: string) => {
      for (const w of workers) {
        peaks.workers = Math.max(peaks.workers, peakMb(w.child.pid!));
        await w.stop();
      }
      workers = [1, 2].map(() => startProcess([process.execPath, bin('worker'), '--config', file], { env: { LOG_LEVEL: 'warn' } }));
      processes.push(...workers);
    };

    // Each phase's figures as soon as it ends: a run of 100 apps on a small machine takes most of an hour.
    const progress = (line: string) => console.log(`[burst ${new Date().toISOString().slice(11, 19)}] ${line}`);

    /** Pushes version `v` of every app at once; resolves when every job has ended. */
    const burst = async (version: string, measure: boolean) => {
      const shas = new Map<string, string>();
      for (const app of apps) shas.set(app.name, await commitVersion(app.repo, { version: `${app.name} ${version}` }));
      const clients = measure ? keepAliveClients(apps, (app) => `${app.name} ${version}\n`) : null;
      if (clients) await new Promise((r) => setTimeout(r, 1000));
      const reloadsBefore = reloadTimes(reloads).length;
      const frontReloadsBefore = reloadTimes(frontReloads).length;
      const errorLogBefore = nginxErrorsSince(0).end;
      const t0 = Date.now();
      const answers = await Promise.all(apps.map((app) => send(receiverUrl, githubRequest(githubPush({ repo: app.described, before: app.sha, after: shas.get(app.name)! }), SECRET))));
      const refused = answers.filter((a) => a.status !== 202);
      if (refused.length > 0) throw new Error(`${refused.length} webhooks not queued: ${JSON.stringify(refused[0])}`);
      // Eight at a time: the last of 100 cold first deploys may wait minutes in the queue.
      const records = await Promise.all(answers.map((a) => waitForJob(queue.store, String(a.body.job), { intervalMs: 200, timeoutMs: 120_000 + APPS * 20_000 })));
      const failed = new Set(records.filter((r) => r.state !== 'completed').map((r) => r.app));
      if (failed.size > 0) {
        const first = records.find((r) => r.state !== 'completed')!;
        const what = `${failed.size} deploys did not complete: ${first.state} ${first.error}\nnginx's warnings and errors in this burst, the last:\n${nginxErrorsSince(errorLogBefore).lines.slice(-20).join('\n')}`;
        // Without its first release an app cannot be measured; a failed deploy in a measured phase is one of its figures.
        if (!clients) throw new Error(what);
        progress(what);
      }
      for (const app of apps) app.sha = shas.get(app.name)!;
      if (!clients) return null;
      const deployed = apps.filter((app) => !failed.has(app.name));
      await waitFor('every deployed app answering its new version', () => deployed.every((app) => clients.report.firstNew.has(app.name)), { timeoutMs: 60_000, intervalMs: 100 });
      const allLive = Math.max(...deployed.map((app) => clients.report.firstNew.get(app.name)!));
      await new Promise((r) => setTimeout(r, 1000));
      const report = await clients.stop();
      const times = reloadTimes(reloads).slice(reloadsBefore);
      const nginxErrors = nginxErrorsSince(errorLogBefore).lines;
      if (report.failures.length > 0 || nginxErrors.length > 0) {
        progress(`${report.non2xx} non-2xx answers, the first: \n  ${report.failures.join('\n  ')}\nnginx logged ${nginxErrors.length} warnings or errors in the phase, the first: \n  ${nginxErrors.slice(0, 10).join('\n  ')}`);
        // Whose address an error names (an old container drained and stopped, or a new one), from the jobs' own logs.
        for (const port of new Set(nginxErrors.slice(0, 5).map((l) => /upstream: "http:\/\/[\d.]+:(\d+)\//.exec(l)?.[1]).filter(Boolean))) {
          for (const record of records) {
            const log = await queue.store.readLog(record.id);
            if (!log.some((l) => l.includes(`:${port}`))) continue;
            progress(`port ${port} in job ${record.id} (${record.app}):\n  ${log.filter((l) => /serving now|started|nginx|switch|drain|stopped|done/.test(l)).slice(0, 15).join('\n  ')}`);
          }
        }
      }
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      return {
        live: allLive - t0,
        perMinute: (deployed.length / (allLive - t0)) * 60_000,
        reloads: times.length,
        frontReloads: reloadTimes(frontReloads).length - frontReloadsBefore,
        minGap: gaps.length ? Math.min(...gaps) : null,
        requests: report.requests,
        resets: report.resets,
        non2xx: report.non2xx,
        oldAfterNew: report.oldAfterNew,
        failed: failed.size,
      };
    };

    type Phase = NonNullable<Awaited<ReturnType<typeof burst>>>;
    const row = (label: string, r: Phase) =>
      `| ${label} | ${secs(r.live)} | ${r.perMinute.toFixed(0)} | ${r.reloads} | ${r.minGap === null ? '-' : `${r.minGap} ms`} | ${r.resets} of ${r.requests} | ${r.non2xx} | ${r.oldAfterNew} | ${r.failed} |`;

    // v1: every app live once (clone and build caches warm), not measured.
    await startWorkers(configs.batched);
    const setupT0 = Date.now();
    await burst('v1', false);
    const setup = Date.now() - setupT0;
    progress(`first deploy of all ${APPS} done in ${secs(setup)}`);

    await startWorkers(configs.unbatched);
    const before = (await burst('v2', true))!;
    progress(row('0 (one reload per switch)', before));
    await startWorkers(configs.batched);
    const after = (await burst('v3', true))!;
    progress(row('200 (default)', after));

    // Two tiers: every app's back moves to its socket and its front file is written (not measured), then the same burst.
    const moved = startProcess([process.execPath, cli, 'router', '--once', '--config', configs.tiers], { env: { LOG_LEVEL: 'warn' } });
    const movedExit = await moved.exited;
    if (movedExit !== 0) throw new Error(`slipway router --once exited ${movedExit}`);
    await startWorkers(configs.tiers);
    const tiered = (await burst('v4', true))!;
    progress(row('200, two tiers', tiered));

    for (const w of workers) peaks.workers = Math.max(peaks.workers, peakMb(w.child.pid!));
    console.log([
      `${APPS} apps (1 replica each, upstream routing), ${APPS} signed pushes at once, 2 workers x concurrency 4, a keep-alive client on every app:`,
      `(first deploy of all ${APPS}, batched, not measured: ${secs(setup)})`,
      '',
      '| router.batch_ms | first webhook -> all serving the new commit | deploys/min | nginx reloads | shortest gap between reloads | keep-alive requests reset | non-2xx | old answers after new | deploys failed |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
      row('0 (one reload per switch)', before),
      row('200 (default)', after),
      row('200, two tiers (nginx.front)', tiered),
      '',
      `two tiers: the front nginx reloaded ${tiered.frontReloads} times during its burst; resets ${tiered.resets} against ${before.resets} with one reload per switch (${tiered.resets > 0 ? `${(before.resets / tiered.resets).toFixed(1)}x fewer` : 'none at all'})`,
      `ratios batched (one tier) / unbatched: time ${(after.live / before.live).toFixed(2)}, reloads ${(after.reloads / Math.max(1, before.reloads)).toFixed(2)}, resets ${(after.resets / Math.max(1, before.resets)).toFixed(2)} (${before.resets > 0 ? `${(before.resets / Math.max(1, after.resets)).toFixed(1)}x fewer` : 'none before'})`,
      `peak RSS: receiver ${peakMb(receiver.child.pid!).toFixed(0)} MB, worker ${peaks.workers.toFixed(0)} MB (the larger of the two, over all phases), bench process ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`,
    ].join('\n'));
    await queue.close();
    redis.disconnect();
    await git.close();
    await nginx.stop();
    await front.stop();
  });
});
