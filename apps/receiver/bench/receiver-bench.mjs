// Receiver benchmark: signed 8 KB GitHub pushes at 50 connections with wrk, beside
// @octokit/webhooks' own middleware (the peer), a floor (verify + parse + one Redis SET) and
// a bare express handler answering 202. Every server is started first, then measured in turn,
// round after round; ratios are taken within a round (runs seconds apart) and their median
// printed, because on a shared machine the load drifts within a minute. See ../README.md.
//
//   npm run bench:receiver
//   BENCH_SECONDS=10 BENCH_RUNS=3 (rounds) BENCH_PROCESSES=1,2 (receiver.processes to measure)
//   BENCH_PEERS=octokit,floor,bare BENCH_CONNECTIONS=50 BENCH_APPS=200 BENCH_COMMITS=40 BENCH_PROFILE=<dir>
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ensureSystemPackages, freePort, githubSignature, startRedis, stopProcess } from '@slipway/devstack/testing';
import { connectRedis } from '@slipway/queue/redis';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
// Rounds against the same processes: their RSS after each shows whether they grow.
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

/** A server under test: its processes' pids, and a measured wrk run against it. */
async function startServer(name, argv, port, { processes = 1 } = {}) {
  const child = await startChild(argv, port);
  for (let i = 0; i < 100 && processTree(child.pid).length < (processes > 1 ? processes + 1 : 1); i++) await sleep(100);
  const pids = processTree(child.pid);
  return {
    name, child, port, pids,
    cpu: () => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    memory: () => pids.map((pid) => memory(pid)),
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const range = (xs, d = 0) => `${fmt(Math.min(...xs), d)}-${fmt(Math.max(...xs), d)}`;

async function main() {
  const redisPort = await freePort();
  const redis = await startRedis(join(dir.path, 'redis'), redisPort);
  const client = connectRedis(redis.url, 'producer');
  await new Promise((resolve) => client.once('ready', resolve));
  try {
    const apps = writeFixtures();
    // Every server is started first and measured in turn, round after round: on a shared machine
    // the load drifts within a minute, so each round's ratios compare runs seconds apart.
    const servers = [];
    for (const processes of PROCESS_COUNTS) {
      const port = await freePort();
      const config = join(dir.path, `slipway-${processes}.yml`);
      // delivery_retention_h 0: commits and deliveries are remembered for a second, less than a body takes to come round again.
      writeFileSync(config, `redis: ${redis.url}\nqueue: { prefix: bench }\nreceiver: { host: 127.0.0.1, port: ${port}, metrics: "127.0.0.1:${await freePort()}", delivery_retention_h: 0, processes: ${processes} }\napps:\n${apps}\n`);
      // BENCH_PROFILE=<dir>: the receiver (each of its processes) writes a V8 CPU profile there when it exits.
      const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
      const server = await startServer(`receiver ×${processes}`, [...profile, bin, '--config', config], port, { processes });
      server.receiver = true;
      servers.push(server);
      log(`receiver ×${processes}: pids ${server.pids.join(', ')}, port ${port}`);
    }
    // The peer: @octokit/webhooks' Node middleware verifying and emitting (octokit-server.mjs).
    const peerPort = await freePort();
    if (PEERS.has('octokit')) servers.push(await startServer('octokit', [join(here, 'octokit-server.mjs'), String(peerPort), SECRET], peerPort));
    // The floor: verify, parse and keep each push with one Redis command, nothing else (floor-server.mjs).
    const floorPort = await freePort();
    if (PEERS.has('floor')) servers.push(await startServer('floor', [join(here, 'floor-server.mjs'), String(floorPort), redis.url, SECRET], floorPort));
    // The baseline: a bare express handler answering 202 (bare-server.mjs).
    const barePort = await freePort();
    if (PEERS.has('bare')) servers.push(await startServer('bare', [join(here, 'bare-server.mjs'), String(barePort)], barePort));
    log(`${APPS} apps, ${BODY_BYTES}-byte bodies, wrk -t${THREADS} -c${CONNECTIONS} -d${SECONDS}s, ${RUNS} rounds`);

    for (const server of servers) await wrk(server.port, `warmup-${server.port}`, 3);
    await client.flushall();
    await sleep(1000);
    for (const server of servers) server.before = server.memory();

    const rounds = [];
    for (let round = 1; round <= RUNS; round++) {
      const results = {};
      for (const server of servers) {
        await client.config('RESETSTAT');
        const [cpu0, redis0] = [server.cpu(), await redisCpu(client)];
        // Delivery ids must start with a letter or digit: wrk's label starts them.
        const result = await wrk(server.port, `r${round}-${server.port}`);
        const [cpu1, redis1] = [server.cpu(), await redisCpu(client)];
        result.cpuUs = ((cpu1 - cpu0) / result.requests) * 1e6;
        result.redisUs = ((redis1 - redis0) / result.requests) * 1e6;
        if (server.receiver) {
          result.queued = Number(await client.get('bench:jobs:seq'));
          result.commands = await redisCommands(client, result.requests);
        }
        await client.flushall();
        await sleep(500);
        result.memory = server.memory();
        results[server.name] = result;
        log(`round ${round} ${server.name}: ${fmt(result.rps, 0)} req/s, p50 ${fmt(result.p50, 2)} ms, p99 ${fmt(result.p99, 2)} ms, ${result.requests} requests, non-2xx ${result.non2xx}${server.receiver ? `, ${result.queued} jobs queued` : ''}; CPU per request ${fmt(result.cpuUs, 0)} µs${server.receiver ? `, redis ${fmt(result.redisUs, 0)} µs; in redis: ${result.commands}` : ''}`);
      }
      rounds.push(results);
    }

    const of = (name, k) => rounds.map((r) => r[name][k]);
    const lines = [
      `| ${RUNS} rounds of ${SECONDS} s | requests/s (median, range) | p50 | p99 | CPU per request | non-2xx | RSS per process: before → after each round (peak) |`,
      `|---|---:|---:|---:|---:|---:|---|`,
      ...servers.map((s) => {
        const mem = (m) => m.map((x) => fmt(x.rssMb, 0)).join('+');
        return `| ${s.name} | ${fmt(median(of(s.name, 'rps')), 0)} (${range(of(s.name, 'rps'))}) | ${fmt(median(of(s.name, 'p50')), 1)} ms | ${fmt(median(of(s.name, 'p99')), 1)} ms | ${fmt(median(of(s.name, 'cpuUs')), 0)} µs${s.receiver ? ` + ${fmt(median(of(s.name, 'redisUs')), 0)} µs Redis` : ''} | ${of(s.name, 'non2xx').reduce((a, b) => a + b, 0)} | ${mem(s.before)} → ${rounds.map((r) => mem(r[s.name].memory)).join(' → ')} MB (${rounds.at(-1)[s.name].memory.map((x) => fmt(x.hwmMb, 0)).join('+')}) |`;
      }),
      '',
    ];
    // Ratios round by round (runs seconds apart), then their median and range.
    const ratio = (a, b, k) => rounds.map((r) => r[a][k] / r[b][k]);
    for (const s of servers.filter((x) => x.receiver)) {
      if (PEERS.has('octokit')) lines.push(`${s.name}/octokit: ${fmt(median(ratio(s.name, 'octokit', 'rps')), 2)}× the requests per second (rounds ${range(ratio(s.name, 'octokit', 'rps'), 2)}), p99 ${fmt(median(ratio(s.name, 'octokit', 'p99')), 2)}× octokit's (${range(ratio(s.name, 'octokit', 'p99'), 2)})`);
      if (PEERS.has('bare')) lines.push(`${s.name}/bare express: ${fmt(median(ratio(s.name, 'bare', 'rps')), 2)} (${range(ratio(s.name, 'bare', 'rps'), 2)})`);
      if (PEERS.has('floor')) lines.push(`${s.name}/floor: ${fmt(median(ratio(s.name, 'floor', 'rps')), 2)} (${range(ratio(s.name, 'floor', 'rps'), 2)})`);
      lines.push(`${s.name}: jobs queued ${of(s.name, 'queued').join(', ')} for ${of(s.name, 'requests').join(', ')} requests; socket errors ${of(s.name, 'errors').join(' / ')}`);
    }
    if (PEERS.has('floor') && PEERS.has('bare')) lines.push(`floor/bare express: ${fmt(median(ratio('floor', 'bare', 'rps')), 2)} (${range(ratio('floor', 'bare', 'rps'), 2)})`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    // Each server is waited for (up to 10 s, then killed): a receiver writes its BENCH_PROFILE on
    // the way out, and needs Redis and its stdout until then.
    const running = (child) => child.exitCode === null && child.signalCode === null;
    await Promise.all(children.filter(running).map(async (child) => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (running(child)) child.kill('SIGKILL');
    }));
    client.disconnect();
    await stopProcess(redis.pid);
    rmSync(dir.path, { recursive: true, force: true });
  }
}

await main();
