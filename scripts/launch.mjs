// What each bin launcher (apps/*/bin/*.js) runs: the built code, built first
// when it is not there yet. Plain JavaScript with no dependencies, like the
// bootstrap: it runs before anything is built.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { holdInstallLock } from './install-lock.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Imports `built` (a launcher's `../dist/bin.js`), running the repository's
 * build first when it is missing: right after `npm ci`, every bin is
 * reachable with `npx` from the repository root. The build holds the
 * bootstrap's lock (two bins started at once build once), and says what it
 * does on stderr, never on stdout (a `--json` answer stays one document).
 */
export async function launch(built, name) {
  if (!existsSync(built)) build(built, name);
  await import(built.href);
}

function build(built, name) {
  const say = (line) => console.error(`${name}: ${line}`);
  const release = holdInstallLock(join(root, '.slipway', 'bootstrap.lock'), say);
  try {
    // Built meanwhile by whoever held the lock.
    if (existsSync(built)) return;
    say('not built yet: building the repository once (npm run build)');
    const res = spawnSync('npx', ['--no-install', 'turbo', 'run', 'build', '--output-logs=errors-only'], {
      cwd: root, stdio: ['ignore', 2, 2], env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' },
    });
    if (res.status !== 0 || !existsSync(built)) {
      say(`the build failed (${res.error?.message ?? `exit ${res.status ?? res.signal}`}); ${fileURLToPath(built)} is missing. Run \`npm ci\` then \`npm run build\` in ${root}.`);
      process.exit(1);
    }
  } finally {
    release();
  }
}
