// The lock the bootstrap holds while it installs and builds (see holdInstallLock).
// Plain JavaScript with no dependencies, like the bootstrap.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * When process `pid` started (clock ticks since boot, /proc/<pid>/stat), or
 * null once it is gone (a zombie, killed and not yet reaped, is gone): a
 * pid reused later differs.
 */
export function startOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? null : fields[19];
  } catch {
    return null;
  }
}

/**
 * One install and build at a time from this checkout: `npm start` and
 * `npm test` started together on a fresh clone would otherwise both run
 * `npm ci` (each wiping node_modules) and the build (each clearing dist/).
 * The second waits for the first; a lock left by a killed run is taken over.
 */
export function holdInstallLock(file, say, options = {}) {
  mkdirSync(dirname(file), { recursive: true });
  const own = JSON.stringify({ pid: process.pid, start: startOf(process.pid) });
  const deadline = Date.now() + (options.timeoutMs ?? 20 * 60_000);
  let waiting = false;
  let told = false;
  for (;;) {
    try {
      writeFileSync(file, own, { flag: 'wx' });
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    let holder = null;
    try {
      holder = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      // Being written this instant, or cut short by a kill: looked at again below.
    }
    if (holder === null || startOf(holder.pid) !== holder.start) {
      // Its holder is gone (or the file is unreadable twice in a row): taken over.
      if (holder !== null || waiting) rmSync(file, { force: true });
    } else {
      if (!told) say(`another npm start or npm test (pid ${holder.pid}) is installing and building this checkout; waiting for it`);
      told = true;
      if (Date.now() > deadline) {
        say(`still waiting for pid ${holder.pid}; giving up (kill it, or remove ${file} if it is not Slipway's)`);
        process.exit(1);
      }
    }
    waiting = true;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 250);
  }
  const release = () => {
    try {
      if (readFileSync(file, 'utf8') === own) rmSync(file, { force: true });
    } catch {
      // Gone already.
    }
  };
  process.on('exit', release);
  return release;
}
