#!/usr/bin/env node
// Everything `npm start` and `npm test` need before TypeScript can run:
// a supported Node, dependencies matching package-lock.json, a fresh build.
// Plain JavaScript with no dependencies, because it runs before `npm ci`.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { holdInstallLock, startOf } from './install-lock.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (line) => console.error(`[bootstrap] ${line}`);

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 11)) {
  say(`Node ${process.versions.node} is too old; Slipway needs Node 20.11 or newer.`);
  process.exit(1);
}

function run(argv, extraEnv = {}, options = { fatal: true }) {
  const res = spawnSync(argv[0], argv.slice(1), { cwd: root, stdio: ['ignore', 'inherit', options.quiet ? 'pipe' : 'inherit'], env: { ...process.env, ...extraEnv } });
  if (res.status !== 0 && options.fatal) {
    say(`${argv.join(' ')} failed (exit ${res.status ?? res.signal})`);
    process.exit(res.status || 1);
  }
  return { ok: res.status === 0, stderr: res.stderr?.toString() ?? '' };
}

// npm ci only when the lock file changed since the last install: it wipes
// node_modules, which costs half a minute every time otherwise.
/**
 * The `npm start` running from this checkout, if one is: the pid its lock
 * (`.slipway/up.lock`, written by the devstack's `up`) names, while that
 * process, started when the lock says, still runs.
 */
function runningStart() {
  try {
    const { pid, start } = JSON.parse(readFileSync(join(root, '.slipway', 'up.lock'), 'utf8'));
    return pid !== process.pid && startOf(pid) === start ? pid : null;
  } catch {
    return null;
  }
}


// A second npm start is refused before it installs or builds anything under the running one.
const running = runningStart();
if (running !== null && process.env.npm_lifecycle_event === 'start') {
  say(`Slipway is already running from ${join(root, '.slipway')} (pid ${running}): its addresses are printed in that terminal, and Ctrl-C there stops it (or: kill ${running})`);
  process.exit(1);
}

const releaseInstallLock = holdInstallLock(join(root, '.slipway', 'bootstrap.lock'), say);
const lockDigest = () => createHash('sha256').update(readFileSync(join(root, 'package-lock.json'))).digest('hex');
const stamp = join(root, 'node_modules', '.slipway-installed');
if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== lockDigest()) {
  if (running !== null) {
    say(`package-lock.json has changed, and npm start (pid ${running}) runs from this checkout: npm ci would replace node_modules under it. Stop it (Ctrl-C there), then run this again.`);
    process.exit(1);
  }
  say('installing dependencies (npm ci)');
  const ci = run(['npm', 'ci', '--no-audit', '--no-fund'], {}, { fatal: false, quiet: true });
  if (!ci.ok) {
    // npm 11.19 refuses (EUSAGE, "not in sync") a lock file that lacks other
    // platforms' optional packages (rollup's, turbo's), as one written on
    // another npm may. `npm install` installs the same locked versions.
    const why = ci.stderr.split('\n').find((line) => line.includes('npm error') && line.trim() !== 'npm error') ?? 'npm ci failed';
    say(`npm ci refused the lock file (${why.replace(/^npm error\s*/, '').trim()}); installing from it with npm install`);
    run(['npm', 'install', '--no-audit', '--no-fund']);
  }
  // The lock as npm left it: `npm install` adds other platforms' entries, and
  // the next run must not take that for a changed lock and install again.
  writeFileSync(stamp, lockDigest());
}

say('building');
run(['npx', '--no-install', 'turbo', 'run', 'build', '--output-logs=errors-only'], { TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' });
releaseInstallLock();
