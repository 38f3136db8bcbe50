#!/usr/bin/env node
// The start command driven the way a new user drives it, start to Ctrl-C:
//
//   node scripts/start-smoke.mjs
//
// `npm start` with its output piped (as `npm start | tee start.log` would),
// until it prints that Slipway is up, its demo app deployed (the app answers
// its repository's master); then the three things it prints, run
// exactly as printed (the push must stream the build and the rollout, the
// app must answer the pushed version, the jobs must list both jobs); a
// GitHub push webhook signed by hand with the demo's secret, the way curl
// would send it, answered 202 and its job completed; `npx slipway jobs
// --json`; a second `npm start` beside the first, refused while the first
// serves on, and `slipway-devstack stop` of its stack refused too; SIGINT
// to the whole process group, as Ctrl-C sends it; nothing of Slipway's
// left running. Then a second `npm start` must come up again,
// the app deployed again at the same address, and stop as cleanly. A
// failure prints the tail of the start log.
//
// Plain Node, no dependencies: it tests a checkout, it is not part of one.
import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startOf } from './install-lock.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const slipwayDir = join(root, '.slipway');
const logFile = join(slipwayDir, 'start-smoke.log');
/** A first start on a bare machine installs Debian packages and builds the demo from cold caches. */
const UP_TIMEOUT_MS = 20 * 60_000;
const STOP_TIMEOUT_MS = 120_000;
const APP = 'hello';

const say = (line) => console.error(`[start-smoke] ${line}`);

class SmokeFailure extends Error {}
function check(condition, what) {
  if (!condition) throw new SmokeFailure(what);
}

/** `npm start` in a process group of its own, output piped into the log and kept for matching. */
function startSlipway(round) {
  mkdirSync(slipwayDir, { recursive: true });
  appendFileSync(logFile, `\n===== npm start (round ${round}) at ${new Date().toISOString()} =====\n`);
  const child = spawn('npm', ['start'], { cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const run = { child, output: '', exited: null };
  for (const stream of [child.stdout, child.stderr]) {
    stream.on('data', (chunk) => {
      run.output += chunk.toString();
      appendFileSync(logFile, chunk);
    });
  }
  run.exit = new Promise((resolve) => child.on('exit', (code, signal) => resolve((run.exited = code ?? signal))));
  return run;
}

async function waitForUp(run) {
  const deadline = Date.now() + UP_TIMEOUT_MS;
  while (!run.output.includes('Ctrl-C stops everything.')) {
    check(run.exited === null, `npm start exited (${run.exited}) before it was up`);
    check(Date.now() < deadline, `npm start was not up after ${UP_TIMEOUT_MS / 60_000} min`);
    await sleep(250);
  }
  // Not "Slipway is up, but the first deploy … FAILED": the demo must be deployed, not only Slipway running.
  check(/^Slipway is up\.$/m.test(run.output), `npm start came up without the demo app: ${/^Slipway is up.*$/m.exec(run.output)?.[0]}`);
  const printed = (label) => {
    const match = new RegExp(`^\\s*${label}\\s+(.+)$`, 'm').exec(run.output);
    check(match, `npm start did not print "${label}"`);
    return match[1].trim();
  };
  return {
    push: printed('1\\. push to deploy:'),
    open: printed('2\\. open the app:'),
    jobs: printed('3\\. see the jobs:'),
    config: printed('config'),
  };
}

/** A line as the user would paste it into a shell: this is the one place a shell runs, on purpose. */
function inShell(line) {
  const res = spawnSync('/bin/sh', ['-c', line], { cwd: root, encoding: 'utf8', timeout: 600_000, stdio: ['ignore', 'pipe', 'pipe'] });
  appendFileSync(logFile, `\n$ ${line}\n${res.stdout}${res.stderr}(exit ${res.status ?? res.signal})\n`);
  return { code: res.status, output: `${res.stdout}${res.stderr}` };
}

function run(argv, options = {}) {
  const res = spawnSync(argv[0], argv.slice(1), { cwd: root, encoding: 'utf8', timeout: 120_000, ...options });
  check(res.status === 0, `${argv.join(' ')} failed (exit ${res.status ?? res.signal}): ${res.stderr}`);
  return res.stdout.trim();
}

/** The app's answer, through curl as printed when curl is there, else the same GET from Node. */
async function openApp(printed) {
  const url = /https?:\/\/\S+/.exec(printed)?.[0];
  check(url, `no URL in "${printed}"`);
  if (spawnSync('sh', ['-c', 'command -v curl'], { stdio: 'ignore' }).status === 0) {
    const res = inShell(printed);
    check(res.code === 0, `"${printed}" failed (exit ${res.code})`);
    return res.output;
  }
  return (await fetch(url)).text();
}

/** The start's own deploy: the app answers what its repository's master holds, before anything is pushed. */
async function checkStartDeployed(printed) {
  const expected = run(['git', '--git-dir', join(slipwayDir, 'demo', `${APP}.git`), 'show', 'refs/heads/master:www/index.html']);
  const answer = await openApp(printed.open);
  check(answer.includes(expected), `after npm start the app answered ${JSON.stringify(answer)}, not ${JSON.stringify(expected)}`);
}

async function waitForJob(config, id) {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const jobs = JSON.parse(run(['npx', '--no-install', 'slipway', '--config', config, 'jobs', '--json', '--limit', '50']));
    const job = jobs.find((j) => j.id === id);
    if (job && ['completed', 'failed', 'superseded', 'cancelled'].includes(job.state)) return job;
    check(Date.now() < deadline, `job ${id} did not end within 5 min`);
    await sleep(500);
  }
}

/** A GitHub push webhook for a new commit of the demo, signed with the demo's secret, sent as curl would send it. */
async function pushWebhook(config) {
  const settings = JSON.parse(readFileSync(config, 'utf8'));
  const app = settings.apps[APP];
  const work = join(slipwayDir, 'demo', `${APP}-work`);
  const bare = join(slipwayDir, 'demo', `${APP}.git`);
  const before = run(['git', '--git-dir', bare, 'rev-parse', 'refs/heads/master']);
  // What a developer's `git push origin master` to the forge does; the forge then sends the webhook.
  writeFileSync(join(work, 'www', 'index.html'), 'hello from a webhook\n');
  run(['git', '-C', work, 'commit', '-qam', 'from a webhook']);
  const after = run(['git', '-C', work, 'rev-parse', 'HEAD']);
  run(['git', '-C', work, 'push', '-q', 'origin', 'HEAD:refs/heads/master']);
  const body = JSON.stringify({
    ref: 'refs/heads/master', before, after, created: false, deleted: false, forced: false,
    repository: { name: APP, full_name: `demo/${APP}`, clone_url: app.repo, html_url: null },
    pusher: { name: 'start-smoke' },
    head_commit: { id: after, message: 'from a webhook' },
    commits: [{ id: after, message: 'from a webhook' }],
  });
  const res = await fetch(`http://127.0.0.1:${settings.receiver.port}/hooks/github`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-GitHub-Event': 'push',
      'X-GitHub-Delivery': randomUUID(),
      'X-Hub-Signature-256': `sha256=${createHmac('sha256', app.secret).update(body).digest('hex')}`,
    },
    body,
  });
  const answer = await res.text();
  check(res.status === 202, `the signed webhook was answered ${res.status}: ${answer}`);
  return { job: JSON.parse(answer).job, sha: after };
}

/** Processes of this checkout's Slipway: started from, or working in, .slipway (services, demo), or Slipway's own bins. */
function leftovers() {
  const found = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    if (Number(pid) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const ours = argv.some((arg) => arg.includes(slipwayDir) || /\/(apps|packages)\/[a-z-]+\/(bin|dist)\//.test(arg) && arg.startsWith(root));
      if (ours || cwd.startsWith(slipwayDir)) found.push(`${pid}: ${argv.join(' ')}`);
    } catch {
      // Gone while we looked.
    }
  }
  const containers = spawnSync('docker', ['ps', '-aq', '--filter', `label=slipway.app=${APP}`], { encoding: 'utf8' });
  for (const id of (containers.stdout ?? '').split('\n').filter(Boolean)) found.push(`container ${id}`);
  return found;
}

async function stop(run) {
  process.kill(-run.child.pid, 'SIGINT');
  const code = await Promise.race([run.exit, sleep(STOP_TIMEOUT_MS, undefined, { ref: false }).then(() => 'timeout')]);
  check(code !== 'timeout', `npm start did not stop within ${STOP_TIMEOUT_MS / 1000} s of Ctrl-C`);
  // Stopped by the Ctrl-C it was sent, not failing to stop what it started (a stack that would not stop exits 1).
  check(code === 0 || code === 130 || code === 'SIGINT', `npm start exited ${code} after Ctrl-C, not 0: its stop failed (see its output above)`);
  let left = leftovers();
  for (let i = 0; i < 20 && left.length; i++) {
    await sleep(250);
    left = leftovers();
  }
  check(left.length === 0, `after Ctrl-C, still running:\n  ${left.join('\n  ')}`);
}

async function main() {
  let current = null;
  const started = Date.now();
  try {
    current = startSlipway(1);
    const printed = await waitForUp(current);
    await checkStartDeployed(printed);
    say(`up after ${Math.round((Date.now() - started) / 1000)} s, the demo app deployed`);

    const pushed = inShell(printed.push);
    check(pushed.code === 0, `the printed push failed (exit ${pushed.code}):\n${pushed.output.slice(-2000)}`);
    check(/==> build/.test(pushed.output) && /==> rollout/.test(pushed.output), `the push did not stream the build and the rollout:\n${pushed.output.slice(-2000)}`);
    const version = /echo "([^"]+)"/.exec(printed.push)?.[1];
    check(version, `no version in the printed push: ${printed.push}`);
    const answer = await openApp(printed.open);
    check(answer.includes(version), `the app answered ${JSON.stringify(answer)}, not ${version}`);
    say(`the printed push deployed "${version}"`);
    // And pushed it to the demo's repository too: the next start deploys what its master holds, not the older commit.
    const forgeHead = run(['git', '--git-dir', join(slipwayDir, 'demo', `${APP}.git`), 'show', 'refs/heads/master:www/index.html']);
    check(forgeHead.includes(version), `after the printed push the demo's repository holds ${JSON.stringify(forgeHead)}, not "${version}"`);

    const listed = inShell(printed.jobs);
    check(listed.code === 0 && /git-push/.test(listed.output) && /\bcli\b/.test(listed.output) && /completed/.test(listed.output), `the printed jobs command did not list the start's deploy and the push:\n${listed.output}`);

    const hook = await pushWebhook(printed.config);
    const job = await waitForJob(printed.config, hook.job);
    check(job.state === 'completed', `the webhook's job ${hook.job} ended ${job.state}: ${job.error}`);
    check((await openApp(printed.open)).includes('hello from a webhook'), 'the app does not answer the webhook\'s commit');
    say(`the signed webhook deployed ${hook.sha.slice(0, 12)} (job ${hook.job})`);

    const jobs = JSON.parse(run(['npx', '--no-install', 'slipway', '--config', printed.config, 'jobs', '--json']));
    const triggers = jobs.slice(0, 3).map((j) => `${j.trigger}:${j.state}`).sort();
    check(JSON.stringify(triggers) === JSON.stringify(['cli:completed', 'git-push:completed', 'webhook:completed']), `jobs --json shows ${JSON.stringify(triggers)}`);

    // A second `npm start` beside the first, from another terminal: refused, naming the first, which goes on serving.
    const beside = startSlipway('beside the first');
    const besideCode = await Promise.race([beside.exit, sleep(STOP_TIMEOUT_MS * 5, undefined, { ref: false }).then(() => 'timeout')]);
    if (besideCode === 'timeout') process.kill(-beside.child.pid, 'SIGINT');
    check(besideCode === 1 && /Slipway is already running from .* \(pid \d+\)/.test(beside.output), `a second npm start beside the first ended ${besideCode}, not refused:\n${beside.output.slice(-2000)}`);
    check((await openApp(printed.open)).includes('hello from a webhook'), 'the first start\'s app stopped answering after a second npm start was refused');
    say('a second npm start beside the first was refused, and the first went on');
    // Nor does the devstack's own stop take the running start's services from under it.
    const stopBeside = spawnSync('node', ['packages/devstack/bin/slipway-devstack.js', 'stop', '--dir', '.slipway/stack'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    check(stopBeside.status === 1 && /belongs to process \d+, which is running/.test(stopBeside.stderr), `slipway-devstack stop beside npm start ended ${stopBeside.status}, not refused:\n${stopBeside.stderr}`);
    check((await openApp(printed.open)).includes('hello from a webhook'), 'the first start\'s app stopped answering after slipway-devstack stop was refused');
    say('slipway-devstack stop beside it was refused too');

    await stop(current);
    say('Ctrl-C stopped everything');

    current = startSlipway(2);
    const again = await waitForUp(current);
    await checkStartDeployed(again);
    // The address a user was shown stays the app's (its nginx files of the first start must not hold the port).
    if (printed.open.includes(':8080/')) check(again.open === printed.open, `the second start moved the app: "${again.open}", not "${printed.open}"`);
    say('a second start came up where the first was');

    // Killed (kill -9, the whole group: the OOM killer, a closed terminal's supervisor), a start leaves the stack's
    // services running, its nginx with the demo's files loaded, and the demo's containers: the next start takes them over.
    const killed = JSON.parse(readFileSync(join(slipwayDir, 'up.lock'), 'utf8')).pid;
    process.kill(-current.child.pid, 'SIGKILL');
    await current.exit;
    for (let i = 0; i < 40 && startOf(killed) !== null; i++) await sleep(250);
    current = startSlipway(3);
    const third = await waitForUp(current);
    await checkStartDeployed(third);
    if (printed.open.includes(':8080/')) check(third.open === printed.open, `the start after a kill -9 moved the app: "${third.open}", not "${printed.open}"`);
    await stop(current);
    say(`a start after a kill -9 took over what it left, the app where it was, and stopped cleanly; ${Math.round((Date.now() - started) / 1000)} s in all`);
    return 0;
  } catch (err) {
    say(`FAILED: ${err instanceof SmokeFailure ? err.message : err.stack}`);
    const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-80).join('\n') : '(no log)';
    console.error(`\n--- the last lines of ${logFile} ---\n${tail}\n---`);
    if (current && current.exited === null) {
      try {
        process.kill(-current.child.pid, 'SIGINT');
        await Promise.race([current.exit, sleep(STOP_TIMEOUT_MS, undefined, { ref: false })]);
      } catch {
        // Already gone.
      }
    }
    return 1;
  }
}

process.exitCode = await main();
