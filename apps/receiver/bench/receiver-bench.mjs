// Receiver benchmark: signed 8 KB GitHub pushes at 50 connections with wrk, beside
// @octokit/webhooks' own middleware (the peer), a floor (verify + parse + one Redis SET) and
// a bare express handler answering 202, all measured in the same run. See ../README.md.
//
//   npm run bench -w @slipway/receiver       (BENCH_SECONDS=10 BENCH_CONNECTIONS=50 BENCH_RUNS=3 BENCH_APPS=200 BENCH_COMMITS=40 BENCH_PROFILE=<dir>)
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { githubSignature } from '@slipway/devstack/fake-forge';
import { freePort } from '@slipway/devstack/free-port';
import { stopProcess } from '@slipway/devstack/processes';
import { startRedis } from '@slipway/devstack/services/redis';
import { ensureSystemPackages } from '@slipway/devstack/system-packages';
import { connectRedis } from '@slipway/queue/redis';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
// Several runs against one receiver process: its RSS after each shows whether it grows.
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
// Jobs pile up (no worker drains them in a benchmark); spread them over many apps so no app
// passes the queue's per-app retention (500), where trimming starts scanning waiting jobs.
const APPS = Number(process.env.BENCH_APPS ?? 200);
// Commits per app: every push must be new to the receiver, which answers the same commit of the
// same app again (within the retention, 1 s here) as a replay without queuing anything.
const COMMITS = Number(process.env.BENCH_COMMITS ?? 40);
const BODY_BYTES = 8192;
// Servers measured beside the receiver (BENCH_PEERS=octokit for a quicker run while working).
const PEERS = new Set((process.env.BENCH_PEERS ?? 'octokit,floor,bare').split(','));
// receiver.processes to measure, each with its own receiver (BENCH_PROCESSES=1,2: one process, then two behind node:cluster).
const PROCESS_COUNTS = (process.env.BENCH_PROCESSES ?? '1').split(',').map(Number);
/** One webhook secret for every app, so @octokit/webhooks (one secret) verifies the same bodies. */
const SECRET = 'bench-webhook-secret-0123456789';

const here = fileURLToPath(new URL('.', import.meta.url));
const bin = join(here, '..', 'dist', 'bin.js');
if (!existsSync(bin)) throw new Error(`${bin} is missing: build first (npm run build -w @slipway/receiver)`);
// On a fresh machine the bench installs what it runs (apt-get), like `npm test` does.
ensureSystemPackages(['redis-server', 'wrk'], (line) => process.stderr.write(`[bench] ${line}\n`));

const dir = { path: mkdtempSync(join(tmpdir(), 'slipway-receiver-bench-')) };
const children = [];
const log = (line) => process.stderr.write(`[bench] ${line}\n`);

function pushBody(i, commit) {
  const definitions = createRequire(import.meta.url)('@octokit/webhooks-examples');
  const example = structuredClone(definitions.find((d) => d.name === 'push').examples.find((e) => e.ref === 'refs/heads/master'));
  const name = `bench/app-${i}`;
  Object.assign(example.repository, {
    full_name: name, name: `app-${i}`, html_url: `https://github.com/${name}`, clone_url: `https://github.com/${name}.git`,
    ssh_url: `git@github.com:${name}.git`, git_url: `git://github.com/${name}.git`,
  });
  example.after = createHmac('sha1', 'sha').update(`${i}/${commit}`).digest('hex');
  example.head_commit.message = '';
  const base = Buffer.byteLength(JSON.stringify(example));
  example.head_commit.message = 'x'.repeat(BODY_BYTES - base);
  const body = JSON.stringify(example);
  if (Buffer.byteLength(body) !== BODY_BYTES) throw new Error(`body is ${Buffer.byteLength(body)} bytes`);
  return body;
}

function writeFixtures() {
  // Commit-major order: consecutive requests go to different apps, as a burst from many repositories would.
  const bodies = Array.from({ length: APPS * COMMITS }, (_, n) => pushBody(n % APPS, Math.floor(n / APPS)));
  const signatures = bodies.map((body) => githubSignature(body, SECRET));
  writeFileSync(join(dir.path, 'bodies.txt'), `${bodies.join('\n')}\n`);
  writeFileSync(join(dir.path, 'signatures.txt'), `${signatures.join('\n')}\n`);
  const apps = Array.from({ length: APPS }, (_, i) => `  app-${i}:\n    repo: https://github.com/bench/app-${i}.git\n    secret: ${SECRET}`).join('\n');
  return apps;
}

function writeLua(label) {
  const script = join(dir.path, `${label}.lua`);
  writeFileSync(script, `
local bodies, signatures = {}, {}
for line in io.lines("${join(dir.path, 'bodies.txt')}") do bodies[#bodies + 1] = line end
for line in io.lines("${join(dir.path, 'signatures.txt')}") do signatures[#signatures + 1] = line end
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
function request()
  counter = counter + 1
  local i = (counter % #bodies) + 1
  -- A unique delivery id per request, or every one after the first would be a duplicate.
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = string.format("${label}-%d-%d", tid, counter),
    ["X-Hub-Signature-256"] = signatures[i],
  }
  return wrk.format("POST", "/hooks/github", headers, bodies[i])
end
`);
  return script;
}

/**
 * Runs wrk without blocking this process: its event loop keeps draining the
 * receiver's stdout (one log line per request), as journald or a log shipper
 * would. Blocked, the pipe fills and the receiver's log writes back up.
 */
async function wrk(port, label, seconds = SECONDS) {
  const child = spawn('wrk', [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-s', writeLua(label), `http://127.0.0.1:${port}/hooks/github`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  let stderr = '';
  child.stdout.on('data', (c) => { text += c.toString(); });
  child.stderr.on('data', (c) => { stderr += c.toString(); });
  const status = await new Promise((resolve, reject) => child.once('error', reject).once('close', resolve));
  if (status !== 0) throw new Error(`wrk failed: ${stderr}`);
  const ms = (pattern) => {
    const m = pattern.exec(text);
    if (!m) return NaN;
    const unit = m[2];
    return Number(m[1]) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);
  };
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]),
    p50: ms(/\s50%\s+([\d.]+)(us|ms|s)/),
    p99: ms(/\s99%\s+([\d.]+)(us|ms|s)/),
    requests: Number(/(\d+) requests in/.exec(text)?.[1]),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
    errors: /Socket errors: (.*)/.exec(text)?.[1] ?? 'none',
  };
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Redis's own CPU seconds so far (INFO cpu), and its per-command call counts and times. */
async function redisCpu(client) {
  const info = await client.info('cpu');
  const get = (k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return get('used_cpu_user') + get('used_cpu_sys');
}

/** Redis's busiest commands since the last CONFIG RESETSTAT: µs per webhook each. */
async function redisCommands(client, requests) {
  const info = await client.info('commandstats');
  return [...info.matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g)]
    .map(([, name, calls, usec]) => ({ name, calls: Number(calls), us: Number(usec) / requests }))
    .sort((a, b) => b.us - a.us).slice(0, 5)
    .map((c) => `${c.name} ${fmt(c.us, 0)} µs (${fmt(c.calls / requests, 1)}/webhook)`).join(', ');
}

/** A process and its children (a receiver with processes > 1 is a primary and its workers). */
function processTree(pid) {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...children];
}

function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1]);
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
}

async function startChild(argv, port, env = {}) {
  const child = spawn(process.execPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  child.stdout.on('data', (c) => { if (out.length < 4096) out += c.toString(); });
  for (let i = 0; i < 600 && !out.includes(`${port}`); i++) await sleep(50);
  if (!out.includes(`${port}`)) throw new Error(`${argv.join(' ')} did not start: ${out}`);
  // Logs (one JSON line per request) go on being written, to nowhere: the cost stays in the measurement.
  child.stdout.removeAllListeners('data');
  child.stdout.resume();
  return child;
}

const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '?');

async function main() {
  const redisPort = await freePort();
  const redis = await startRedis(join(dir.path, 'redis'), redisPort);
  const client = connectRedis(redis.url, 'producer');
  await new Promise((resolve) => client.once('ready', resolve));
  try {
    const apps = writeFixtures();
    /** A receiver with `processes` processes: a warm-up, then RUNS measured runs, its CPU (all processes) and RSS after each. */
    const measureReceiver = async (processes) => {
      const port = await freePort();
      const config = join(dir.path, `slipway-${processes}.yml`);
      const metricsPort = await freePort();
      // delivery_retention_h 0: commits and deliveries are remembered for a second, less than a body takes to come round again.
      writeFileSync(config, `redis: ${redis.url}\nqueue: { prefix: bench }\nreceiver: { host: 127.0.0.1, port: ${port}, metrics: "127.0.0.1:${metricsPort}", delivery_retention_h: 0, processes: ${processes} }\napps:\n${apps}\n`);
      // BENCH_PROFILE=<dir>: the receiver writes a V8 CPU profile there when it exits (open it in Chrome's DevTools).
      const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
      const receiver = await startChild([...profile, bin, '--config', config], port);
      for (let i = 0; i < 100 && processTree(receiver.pid).length < (processes > 1 ? processes + 1 : 1); i++) await sleep(100);
      const pids = processTree(receiver.pid);
      const cpu = () => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
      const rss = () => pids.map((pid) => memory(pid));
      log(`receiver ×${processes} (pids ${pids.join(', ')}) on ${port}, ${APPS} apps, ${BODY_BYTES}-byte bodies, wrk -t${THREADS} -c${CONNECTIONS} -d${SECONDS}s`);

      await wrk(port, `warmup${processes}`, 3);
      await client.flushall();
      await sleep(1000);
      const before = rss();
      const runs = [];
      for (const label of Array.from({ length: RUNS }, (_, i) => `×${processes} run${i + 1}`)) {
        await client.config('RESETSTAT');
        const [cpu0, redis0] = [cpu(), await redisCpu(client)];
        // Delivery ids must start with a letter or digit: wrk's label starts them.
        const result = await wrk(port, `p${processes}-${label.split(' ')[1]}`);
        const [cpu1, redis1] = [cpu(), await redisCpu(client)];
        result.receiverUs = ((cpu1 - cpu0) / result.requests) * 1e6;
        result.redisUs = ((redis1 - redis0) / result.requests) * 1e6;
        const queued = Number(await client.get('bench:jobs:seq'));
        result.commands = await redisCommands(client, result.requests);
        await client.flushall();
        await sleep(1000);
        runs.push({ label, processes, ...result, queued, memory: rss() });
        log(`receiver ${label}: ${fmt(result.rps, 0)} req/s, p50 ${fmt(result.p50, 2)} ms, p99 ${fmt(result.p99, 2)} ms, ${result.requests} requests, ${queued} jobs queued, non-2xx ${result.non2xx}; CPU per webhook: receiver ${fmt(result.receiverUs, 0)} µs, redis ${fmt(result.redisUs, 0)} µs; in redis: ${result.commands}`);
      }
      receiver.kill('SIGTERM');
      await new Promise((resolve) => (receiver.exitCode !== null ? resolve() : receiver.once('exit', resolve)));
      return { processes, runs, before };
    };

    /** One server beside the receiver: its own process, a warm-up, one measured run, its CPU per request and peak RSS. */
    const measure = async (name, script, extraArgs = []) => {
      if (!PEERS.has(name)) return null;
      const peerPort = await freePort();
      const child = await startChild([join(here, script), String(peerPort), ...extraArgs], peerPort);
      await wrk(peerPort, `${name}-warmup`, 3);
      await client.flushall();
      const cpu0 = cpuSeconds(child.pid);
      const result = await wrk(peerPort, name);
      result.receiverUs = ((cpuSeconds(child.pid) - cpu0) / result.requests) * 1e6;
      result.hwmMb = memory(child.pid).hwmMb;
      child.kill('SIGTERM');
      await client.flushall();
      return result;
    };
    const line = (what, r) => `${what}: ${fmt(r.rps, 0)} req/s, p50 ${fmt(r.p50, 2)} ms, p99 ${fmt(r.p99, 2)} ms, non-2xx ${r.non2xx}; CPU per request ${fmt(r.receiverUs, 0)} µs, peak RSS ${fmt(r.hwmMb)} MB`;
    // The peer, @octokit/webhooks' Node middleware verifying and emitting (octokit-server.mjs), is measured before
    // and after the receivers and its mean taken: on a shared machine the load drifts during a run.
    const peerBefore = await measure('octokit', 'octokit-server.mjs', [SECRET]);
    if (peerBefore) log(line('@octokit/webhooks middleware (before)', peerBefore));
    const receivers = [];
    for (const processes of PROCESS_COUNTS) receivers.push(await measureReceiver(processes));
    // The baseline: a bare express handler answering 202 (bare-server.mjs).
    const baseline = await measure('bare', 'bare-server.mjs');
    if (baseline) log(line('bare express', baseline));
    // The floor: verify, parse and keep each push with one Redis command, nothing else (floor-server.mjs).
    const floored = await measure('floor', 'floor-server.mjs', [redis.url, SECRET]);
    if (floored) log(line('floor (verify + parse + one Redis SET)', floored));
    const peerAfter = await measure('octokit', 'octokit-server.mjs', [SECRET]);
    if (peerAfter) log(line('@octokit/webhooks middleware (after)', peerAfter));
    const mean = (k) => (peerBefore[k] + peerAfter[k]) / 2;
    const peer = peerBefore && peerAfter ? { rps: mean('rps'), p50: mean('p50'), p99: mean('p99'), non2xx: peerBefore.non2xx + peerAfter.non2xx, receiverUs: mean('receiverUs'), hwmMb: Math.max(peerBefore.hwmMb, peerAfter.hwmMb), errors: `${peerBefore.errors} / ${peerAfter.errors}` } : null;

    const row = (what, r) => (r ? [`| ${what} | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} ms | ${fmt(r.p99, 2)} ms | ${r.non2xx} | – | ${fmt(r.receiverUs, 0)} µs | peak ${fmt(r.hwmMb)} MB |`] : []);
    const ratio = (what, a, b) => (a && b ? [`${what} ${fmt(a.rps / b.rps, 2)}`] : []);
    const mb = (memories, k) => memories.map((m) => fmt(m[k], 0)).join(' + ');
    const lines = [
      `| | requests/s | p50 | p99 | non-2xx | jobs queued | CPU per request | RSS (per process) |`,
      `|---|---|---|---|---|---|---|---|`,
      ...receivers.flatMap(({ runs }) => runs.map((r) => `| receiver ${r.label} | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} ms | ${fmt(r.p99, 2)} ms | ${r.non2xx} | ${r.queued} of ${r.requests} | ${fmt(r.receiverUs, 0)} µs + ${fmt(r.redisUs, 0)} µs in Redis | ${mb(r.memory, 'rssMb')} MB after |`)),
      ...row('@octokit/webhooks middleware (verify + emit; mean of before and after)', peer),
      ...row('floor: verify + parse + one Redis SET', floored),
      ...row('bare express 202', baseline),
      '',
    ];
    for (const { processes, runs, before } of receivers) {
      const best = runs.reduce((a, b) => (b.rps > a.rps ? b : a));
      if (peer) lines.push(`receiver ×${processes}/octokit (best run): ${fmt(best.rps / peer.rps, 2)}× the requests per second, p99 ${fmt(best.p99 / peer.p99, 2)}× octokit's; CPU per webhook ${fmt(best.receiverUs, 0)} µs (+ ${fmt(best.redisUs, 0)} µs in Redis) against ${fmt(peer.receiverUs, 0)} µs`);
      const others = [...ratio('receiver/bare', best, baseline), ...ratio('receiver/floor', best, floored)];
      if (others.length) lines.push(`receiver ×${processes}: ${others.join('; ')}`);
      lines.push(`receiver ×${processes} RSS per process (MB): before the runs ${mb(before, 'rssMb')}, after ${runs.map((r) => `${r.label} ${mb(r.memory, 'rssMb')}`).join(', ')}; peak (VmHWM) ${mb(runs.at(-1).memory, 'hwmMb')}`);
      lines.push(`receiver ×${processes} socket errors: ${runs.map((r) => r.errors).join(' / ')}`);
    }
    if (floored && baseline) lines.push(`floor/bare ${fmt(floored.rps / baseline.rps, 2)}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    client.disconnect();
    await stopProcess(redis.pid);
    rmSync(dir.path, { recursive: true, force: true });
  }
}

await main();
