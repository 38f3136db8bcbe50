import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { processStart } from '@slipway/core/run-command';

/**
 * One `npm start` per directory. A second one beside a running first would
 * reuse its services, write the demo's config over the first's, remove the
 * nginx files it serves, and stop the services under it when either ended;
 * so it is told where the first runs and ends, having touched nothing.
 */

/** What the lock holds: the process, and its start time, so that a pid reused after a crash is not taken for it. */
interface Holder { pid: number; start: string | null }

export class AlreadyRunningError extends Error {
  constructor(readonly pid: number, root: string) {
    super(`Slipway is already running from ${root} (pid ${pid}): its addresses are printed in that terminal, and Ctrl-C there stops it (or: kill ${pid})`);
    this.name = 'AlreadyRunningError';
  }
}

const lockFile = (root: string) => join(root, 'up.lock');

/**
 * Claims `root` for this process; throws AlreadyRunningError while a live
 * process holds it. A lock whose process is gone (killed, crashed, the
 * machine restarted) is taken over, one start at a time. The lock is
 * written whole before it appears (a hard link, which fails if another
 * start made one first), so two starts at the same moment cannot both
 * win, and none reads it torn.
 */
export function claimStart(root: string): { release(): void } {
  const file = lockFile(root);
  const own: Holder = { pid: process.pid, start: processStart(process.pid) };
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, JSON.stringify(own));
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        linkSync(tmp, file);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 50) throw err;
      }
      const text = readText(file);
      const holder = parseHolder(text);
      if (holder && alive(holder)) throw new AlreadyRunningError(holder.pid, root);
      // Gone, or not a lock at all: taken over (then the link is tried again).
      takeOver(file, text);
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  return {
    release: () => {
      const holder = readHolder(file);
      if (holder?.pid === own.pid && holder.start === own.start) rmSync(file, { force: true });
    },
  };
}

/** A takeover guard older than this was left by a start that died in it. */
const GUARD_STALE_MS = 5_000;

/**
 * Removes a dead holder's lock, one start at a time (under a guard
 * directory), and only if it still says what was judged dead: a start
 * that took it over first, and claimed it, keeps it. Waits a moment when
 * another start holds the guard.
 */
function takeOver(file: string, judged: string | null): void {
  const guard = `${file}.takeover`;
  try {
    mkdirSync(guard);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const age = Date.now() - (statSync(guard, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (age > GUARD_STALE_MS) rmSync(guard, { recursive: true, force: true });
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    return;
  }
  try {
    if (readText(file) === judged) rmSync(file, { force: true });
  } finally {
    rmSync(guard, { recursive: true, force: true });
  }
}

/** Still the process that wrote the lock (another than this one). */
function alive(holder: Holder): boolean {
  return holder.pid !== process.pid && holder.start !== null && processStart(holder.pid) === holder.start;
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function readHolder(file: string): Holder | null {
  return parseHolder(readText(file));
}

function parseHolder(text: string | null): Holder | null {
  try {
    const holder = JSON.parse(text ?? 'null') as Partial<Holder> | null;
    return typeof holder?.pid === 'number' ? { pid: holder.pid, start: typeof holder.start === 'string' ? holder.start : null } : null;
  } catch {
    return null;
  }
}
