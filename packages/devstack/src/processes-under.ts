import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { stopProcess } from './processes.js';

/**
 * Pids of processes started from, or working in, `dir`: their argv names a
 * path under it, or their working directory is under it (redis rewrites its
 * title but chdirs to its data dir). How a stack finds what its tests
 * started, whatever they started.
 */
export function processesUnder(dir: string): number[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const cwd = readlinkSync(`/proc/${name}/cwd`);
      if (argv.some((arg) => arg.includes(prefix) || arg === dir) || cwd === dir || cwd.startsWith(prefix)) found.push(Number(name));
    } catch {
      // Gone while we looked, or not ours to read.
    }
  }
  return found;
}

/** Stops (SIGTERM, then SIGKILL) every process under `dir`. */
export async function stopProcessesUnder(dir: string, graceMs = 10_000): Promise<number> {
  const pids = processesUnder(dir);
  await Promise.all(pids.map((pid) => stopProcess(pid, graceMs)));
  return pids.length;
}
