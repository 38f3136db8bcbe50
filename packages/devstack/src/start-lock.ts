import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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
 * machine restarted) is taken over. The lock is written whole before it
 * appears (a hard link, which fails if another start made one first), so
 * two starts at the same moment cannot both win, and none reads it torn.
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
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 3) throw err;
      }
      const holder = readHolder(file);
      if (holder && alive(holder)) throw new AlreadyRunningError(holder.pid, root);
      // Gone, or not a lock at all: taken over. Moved aside in one rename, and looked at again: a start
      // that took it over first (both judged the same dead lock) has its own put back, and wins.
      const aside = `${file}.${randomBytes(4).toString('hex')}.gone`;
      try {
        renameSync(file, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        continue;
      }
      const moved = readHolder(aside);
      if (moved && alive(moved)) {
        try {
          linkSync(aside, file);
        } catch {
          // A third start's claim is in place meanwhile: it answers for itself.
        }
        rmSync(aside, { force: true });
        throw new AlreadyRunningError(moved.pid, root);
      }
      rmSync(aside, { force: true });
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

/** Still the process that wrote the lock (another than this one). */
function alive(holder: Holder): boolean {
  return holder.pid !== process.pid && holder.start !== null && processStart(holder.pid) === holder.start;
}

function readHolder(file: string): Holder | null {
  try {
    const holder = JSON.parse(readFileSync(file, 'utf8')) as Partial<Holder>;
    return typeof holder.pid === 'number' ? { pid: holder.pid, start: typeof holder.start === 'string' ? holder.start : null } : null;
  } catch {
    return null;
  }
}
