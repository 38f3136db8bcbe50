/**
 * npm run bench:deploy — push-to-live for the sample app with a warm build
 * cache: from the webhook's arrival until every response through nginx
 * comes from the new version. Median of 5, split into queue wait, checkout,
 * build, start + health, switch; beside a baseline measured in the same run
 * that does the old recipe's steps by hand (git clone, docker build, docker
 * run, wait for health, render nginx, reload, kill the old containers).
 * Also: enqueue -> worker start latency beside a bare BullMQ worker, and
 * the receiver's and worker's peak RSS. Each push is followed by the same
 * kind of push whose commit carries a `.slipway.yml` with one trivial test
 * step (`[true]` in the image just built): the cost of a step (container
 * create + start + wait + remove, and its timeline) as its own figure.
 */
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import Docker from 'dockerode';
import { afterAll, describe, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { loadConfig } from '@slipway/config/load-config';
import { commitVersion, createFixtureRepo, freePort, isolatedNginx, type RunningProcess, startGitHttpServer, startProcess, tempDir, testAppName, testStack, uniqueName, waitFor, writeTestConfig } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { waitForJob } from '@slipway/queue/follow-job';
import type { JobRecord, Step } from '@slipway/queue/job-types';
import { connectRedis } from '@slipway/queue/redis';
import { githubPush, githubRequest, send } from '../support/webhooks.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SECRET = 'bench-webhook-secret-0123456789';
const bin = (app: string) => fileURLToPath(new URL(`../../apps/${app}/bin/slipway-${app}.js`, import.meta.url));
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const memory = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1]) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
};

/** Polls nginx until `streak` consecutive answers are `body`; returns when the first of them came. */
async function liveAt(url: string, body: string, streak = 10): Promise<number> {
  let run = 0;
  let first = 0;
  for (;;) {
    const text = await fetch(url, { headers: { Connection: 'close' } }).then((r) => r.text()).catch(() => '');
    const now = Date.now();
    if (text === body) {
      if (run === 0) first = now;
      if (++run >= streak) return first;
    } else {
      run = 0;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

const at = (record: JobRecord, step: Step) => Date.parse(record.steps.find((s) => s.step === step)?.at ?? 'x');

describe('bench: push to live', () => {
  const tmp = tempDir();
  const processes: RunningProcess[] = [];
  afterAll(async () => {
    for (const p of processes) await p.stop();
    tmp.remove();
  });

  it(`median of ${RUNS} deploys`, async () => {
    const app = testAppName();
    mkdirSync(join(tmp.path, 'git', 'acme'), { recursive: true });
    const repo = await createFixtureRepo(join(tmp.path, 'git', 'acme'), { version: 'bench v0', name: app });
    const git = await startGitHttpServer({ root: join(tmp.path, 'git') });
    const described = { fullName: `acme/${app}`, cloneUrl: `${git.url}/acme/${app}.git`, htmlUrl: `${git.url}/acme/${app}` };
    const nginx = await isolatedNginx(tmp.path);
    const [listen, receiverPort] = [await freePort(), await freePort()];
    const appUrl = `http://127.0.0.1:${listen}/`;
    const receiverUrl = `http://127.0.0.1:${receiverPort}`;
    const configFile = writeTestConfig(join(tmp.path, 'slipway.yml'), {
      stack: testStack(), nginx, prefix: uniqueName('bench'), workdir: join(tmp.path, 'work'),
      apps: { [app]: { repo: described.cloneUrl, secret: SECRET, replicas: 2, listen: `127.0.0.1:${listen}`, drain_s: 2, stop_timeout_s: 3, health: { interval_ms: 50 } } },
      extra: { receiver: { host: '127.0.0.1', port: receiverPort, metrics: `127.0.0.1:${await freePort()}` } },
    });
    const config = loadConfig({ path: configFile, env: {} });
    const redis = connectRedis(config.redis, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    const queue = new DeployQueue({ redis, prefix: config.queue.prefix });
    const receiver = startProcess([process.execPath, bin('receiver'), '--config', configFile], { env: { LOG_LEVEL: 'warn' } });
    const worker = startProcess([process.execPath, bin('worker'), '--config', configFile], { env: { LOG_LEVEL: 'warn' } });
    processes.push(receiver, worker);
    await waitFor('the receiver', async () => (await fetch(`${receiverUrl}/healthz`).catch(() => null))?.ok, { timeoutMs: 20_000 });

    const untilDone = (id: string) => waitForJob(queue.store, id, { intervalMs: 50 });

    // Warm-up deploy: the build cache, the clone cache, nginx's file.
    let before = repo.sha;
    const warm = await send(receiverUrl, githubRequest(githubPush({ repo: described, before: '0'.repeat(40), after: repo.sha }), SECRET));
    await untilDone(String(warm.body.job));
    const memStart = { receiver: memory(receiver.child.pid!), worker: memory(worker.child.pid!) };

    const rows: Array<Record<string, number>> = [];
    const stepRows: Array<Record<string, number>> = [];
    const workerRss: number[] = [];
    const stepFile = join(repo.work, '.slipway.yml');
    /** One push to live: its phases, and with `step` its commit carries one trivial test step. */
    const push = async (version: string, step: boolean) => {
      if (step) writeFileSync(stepFile, 'steps:\n  - name: trivial\n    command: ["true"]\n');
      else rmSync(stepFile, { force: true });
      const sha = await commitVersion(repo, { version });
      const t0 = Date.now();
      const answer = await send(receiverUrl, githubRequest(githubPush({ repo: described, before, after: sha }), SECRET));
      const live = await liveAt(appUrl, `${version}\n`);
      const record = await untilDone(String(answer.body.job));
      if (record.state !== 'completed') throw new Error(`deploy ${version} ${record.state}: ${record.error}`);
      before = sha;
      workerRss.push(memory(worker.child.pid!).rss);
      const tested = step ? at(record, 'test') : at(record, 'start');
      return {
        total: live - t0,
        queue: Date.parse(record.startedAt!) - Date.parse(record.createdAt),
        checkout: at(record, 'build') - at(record, 'checkout'),
        build: tested - at(record, 'build'),
        // The test phase: the sweep for leftovers, then the step's container created, started, waited for and removed.
        test: at(record, 'start') - tested,
        stepRun: record.tests?.[0]?.durationMs ?? 0,
        startHealth: at(record, 'switch') - at(record, 'start'),
        switch: live - at(record, 'switch'),
      };
    };
    for (let i = 1; i <= RUNS; i++) {
      rows.push(await push(`bench v${i}`, false));
      stepRows.push(await push(`bench v${i} with a step`, true));
    }
    rmSync(stepFile, { force: true });
    const memEnd = { receiver: memory(receiver.child.pid!), worker: memory(worker.child.pid!) };
    const slipway = Object.fromEntries(Object.keys(rows[0]!).map((k) => [k, median(rows.map((r) => r[k]!))]));
    const stepped = Object.fromEntries(Object.keys(stepRows[0]!).map((k) => [k, median(stepRows.map((r) => r[k]!))]));

    // Baseline: the old recipe's steps, by hand, on the same commit and machine.
    const docker = new Docker();
    const baselines: number[] = [];
    for (let i = 1; i <= Math.min(RUNS, 3); i++) {
      const version = `baseline v${i}`;
      const sha = await commitVersion(repo, { version });
      const dir = join(tmp.path, `baseline-${i}`);
      const t0 = Date.now();
      await runCommand(['git', 'clone', '-q', described.cloneUrl, dir]);
      await runCommand(['git', '-C', dir, 'checkout', '-q', sha]);
      const image = `slipway/${app}:baseline-${i}`;
      await runCommand(['docker', 'build', '-q', '-t', image, dir]);
      const old = await docker.listContainers({ filters: { label: [`slipway.app=${app}`] } });
      const ids: string[] = [];
      for (let r = 0; r < 2; r++) {
        ids.push((await runCommand(['docker', 'run', '-d', '--label', `slipway.app=${app}`, '-p', '127.0.0.1::8080', image])).stdout.trim());
      }
      const addresses: string[] = [];
      for (const id of ids) {
        const port = (await runCommand(['docker', 'port', id, '8080/tcp'])).stdout.trim().split('\n')[0]!;
        await waitFor('baseline health', async () => (await fetch(`http://${port}/healthz`).catch(() => null))?.ok, { timeoutMs: 30_000, intervalMs: 50 });
        addresses.push(port);
      }
      const file = join(nginx.confDir, `slipway-${app}.conf`);
      const conf = readFileSync(file, 'utf8').replace(/upstream (\S+) \{[^}]*?(keepalive)/s, (_m, name: string, k: string) => `upstream ${name} {\n    ${addresses.map((a) => `server ${a};`).join('\n    ')}\n    ${k}`);
      writeFileSync(file, conf);
      await runCommand(nginx.checkCmd);
      await runCommand(nginx.reloadCmd);
      await liveAt(appUrl, `${version}\n`);
      baselines.push(Date.now() - t0);
      for (const c of old) await runCommand(['docker', 'rm', '-f', c.Id]);
      rmSync(dir, { recursive: true, force: true });
    }
    const baseline = median(baselines);

    // Enqueue -> start: Slipway's worker (from the runs above) beside a bare BullMQ worker doing nothing.
    const bareQueue = new Queue(uniqueName('bare'), { connection: connectRedis(config.redis, 'worker') });
    const lags: number[] = [];
    const bareWorker = new Worker(bareQueue.name, async (job) => void lags.push(Date.now() - (job.data as { t: number }).t), { connection: connectRedis(config.redis, 'worker') });
    await bareWorker.waitUntilReady();
    for (let i = 0; i < 20; i++) {
      await bareQueue.add('x', { t: Date.now() });
      await new Promise((r) => setTimeout(r, 50));
    }
    await waitFor('bare jobs', () => lags.length >= 20, { timeoutMs: 10_000 });
    await bareWorker.close();
    await bareQueue.obliterate({ force: true });
    await bareQueue.close();

    const lines = [
      `push-to-live, sample app, warm build cache, median of ${RUNS} (2 replicas, upstream routing):`,
      '',
      '| phase | Slipway | with one trivial test step |',
      '|---|---:|---:|',
      `| queue wait (webhook queued -> worker starts) | ${secs(slipway.queue!)} | ${secs(stepped.queue!)} |`,
      `| checkout (fetch + worktree) | ${secs(slipway.checkout!)} | ${secs(stepped.checkout!)} |`,
      `| build (docker build, warm cache) | ${secs(slipway.build!)} | ${secs(stepped.build!)} |`,
      `| test (leftover sweep + the step's container created, started, waited for, removed) | – | ${secs(stepped.test!)} |`,
      `| start + health (2 replicas) | ${secs(slipway.startHealth!)} | ${secs(stepped.startHealth!)} |`,
      `| switch (etcd txn + nginx) until every answer is new | ${secs(slipway.switch!)} | ${secs(stepped.switch!)} |`,
      `| **webhook arrival -> every response new** | **${secs(slipway.total!)}** | **${secs(stepped.total!)}** |`,
      '',
      `cost of one trivial step: test phase ${secs(stepped.test!)} (median of ${stepRows.length}; the step's own run as its timeline shows it, create to exit, ${secs(stepped.stepRun!)}); push-to-live with it minus without it: ${secs(stepped.total! - slipway.total!)}`,
      '',
      `baseline, the old recipe by hand (git clone, docker build, 2x docker run, health, nginx -t, reload), median of ${baselines.length}: ${secs(baseline)}`,
      `ratio Slipway / baseline: ${(slipway.total! / baseline).toFixed(2)} (Slipway also drains and stops the old containers, which the baseline does after going live)`,
      '',
      `enqueue -> worker start: Slipway ${median(rows.map((r) => r.queue!)).toFixed(0)} ms (median, includes the app lease and supersede check) vs bare BullMQ ${median(lags).toFixed(0)} ms`,
      `worker RSS after each deploy (MB): ${workerRss.map((m) => m.toFixed(0)).join(' ')}`,
      `memory: receiver RSS ${memStart.receiver.rss.toFixed(0)} -> ${memEnd.receiver.rss.toFixed(0)} MB (peak ${memEnd.receiver.hwm.toFixed(0)} MB); worker RSS ${memStart.worker.rss.toFixed(0)} -> ${memEnd.worker.rss.toFixed(0)} MB (peak ${memEnd.worker.hwm.toFixed(0)} MB); bench process peak ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`,
    ];
    console.log(lines.join('\n'));
    await queue.close();
    redis.disconnect();
    await git.close();
    await nginx.stop();
    // Twice RUNS pushes (with and without a step), the baseline and the warm-up on two shared cores.
  }, 900_000);
});
