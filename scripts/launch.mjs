// What each bin launcher (apps/*/bin/*.js) runs: the built code, built first
// when it is not there yet; and the build itself, under the bootstrap's lock
// (`npm run build` is scripts/build.mjs). Plain JavaScript with no
// dependencies, like the bootstrap: it runs before anything is built.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { holdInstallLock } from './install-lock.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Imports `built` (a launcher's `../dist/bin.js`), running the repository's
 * build first when it is missing: right after `npm ci`, every bin is
 * reachable with `npx` from the repository root. Two bins started at once
 * build once, and what is done is said on stderr, never on stdout (a
 * `--json` answer stays one document).
 */
export async function launch(built, name) {
  if (!existsSync(built)) {
    const say = (line) => console.error(`${name}: ${line}`);
    const res = buildLocked({
      say,
      // Built meanwhile by whoever held the lock.
      unless: () => existsSync(built),
      args: ['--output-logs=errors-only'],
      stdio: ['ignore', 2, 2],
      starting: () => say('not built yet: building the repository once (npm run build)'),
    });
    if (res.status !== 0 || !existsSync(built)) {
      say(`the build failed (${res.error?.message ?? `exit ${res.status ?? res.signal}`}); ${fileURLToPath(built)} is missing. Run \`npm ci\` then \`npm run build\` in ${root}.`);
      process.exit(1);
    }
  }
  await import(built.href);
}

/**
 * turbo's build of every package (with `args`), holding the bootstrap's lock
 * (install-lock.mjs), so that it never runs beside the bootstrap's or
 * another's, each clearing dist/ under the other; skipped when `unless()`
 * says so once the lock is held. Returns spawnSync's result (status 0 when
 * skipped).
 */
export function buildLocked({ say, unless = () => false, args = [], stdio = 'inherit', starting = () => {} }) {
  const release = holdInstallLock(join(root, '.slipway', 'bootstrap.lock'), say);
  try {
    if (unless()) return { status: 0 };
    starting();
    return spawnSync('npx', ['--no-install', 'turbo', 'run', 'build', ...args], {
      cwd: root, stdio, env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' },
    });
  } finally {
    release();
  }
}
