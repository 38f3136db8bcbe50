import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { readLockFile, takeLockFile } from '@slipway/core/lock-file';
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
 * machine restarted), or whose pid another process has since, is taken
 * over (see takeLockFile: the lock appears whole, and two starts at the
 * same moment cannot both win).
 */
export function claimStart(root: string): { release(): void } {
  const file = lockFile(root);
  const own: Holder = { pid: process.pid, start: processStart(process.pid) };
  const held = takeLockFile(file, JSON.stringify(own), (text) => {
    const holder = parseHolder(text);
    return holder !== null && alive(holder);
  });
  if (held !== null) throw new AlreadyRunningError(parseHolder(held)?.pid ?? own.pid, root);
  return {
    release: () => {
      const holder = parseHolder(readLockFile(file));
      if (holder?.pid === own.pid && holder.start === own.start) rmSync(file, { force: true });
    },
  };
}

/** Still the process that wrote the lock (another than this one). */
function alive(holder: Holder): boolean {
  return holder.pid !== process.pid && holder.start !== null && processStart(holder.pid) === holder.start;
}

function parseHolder(text: string | null): Holder | null {
  try {
    const holder = JSON.parse(text ?? 'null') as Partial<Holder> | null;
    return typeof holder?.pid === 'number' ? { pid: holder.pid, start: typeof holder.start === 'string' ? holder.start : null } : null;
  } catch {
    return null;
  }
}
