import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer } from 'node:net';
import { processStart, processStat } from '@slipway/core/run-command';

/**
 * Where services' binaries are besides PATH: Debian installs nginx, dnsmasq,
 * dockerd and ip in /usr/sbin, which a non-root user's PATH often leaves out.
 */
const SYSTEM_BIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** The absolute path of the executable `name`, from `path` (a PATH) or else the system's sbin directories; a name with a `/` is returned as it is. */
export function findExecutable(name: string, path = process.env.PATH ?? ''): string {
  if (name.includes('/')) return name;
  for (const dir of [...path.split(':').filter(Boolean), ...SYSTEM_BIN_DIRS]) {
    const file = resolve(dir, name);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // Not there, or not executable: the next directory.
    }
  }
  throw new Error(`${name} not found: not on PATH (${path || 'empty'}) nor in ${SYSTEM_BIN_DIRS.join(', ')}`);
}

/**
 * Starts a long-running service in its own process group, detached from
 * ours, with output appended to `logFile`. Returns its pid. Its binary is
 * looked up in the sbin directories too (`findExecutable`).
 */
export function spawnService(argv: readonly string[], logFile: string, env: NodeJS.ProcessEnv = process.env): number {
  const [name, ...args] = argv;
  const file = findExecutable(name!, env.PATH);
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(file, args, { detached: true, stdio: ['ignore', fd, fd], env, shell: false });
    if (child.pid === undefined) {
      // Node reports why as an 'error' event on the next tick; unheard, that event would end
      // this process before its caller could stop the services it had already started.
      child.on('error', () => {});
      throw new Error(`could not start ${file}`);
    }
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** A process that was to answer exited: what a waitFor probe throws to end the wait at once. */
export class ExitedError extends Error {}

/**
 * `answers` as a waitFor probe for the process `pid`: once it has exited,
 * the wait ends at once (ExitedError, naming its log), and an answer then
 * is someone else's (a port taken between choosing and binding it).
 */
export function answersWhileAlive(what: string, pid: number, log: string, answers: () => Promise<boolean>): () => Promise<boolean> {
  return async () => {
    const answered = await answers();
    if (!isAlive(pid)) throw new ExitedError(`${what}: the process (pid ${pid}) exited before it answered; see ${log}`);
    return answered;
  };
}

export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // Another user's process (root's CI, seen by a user) is alive: only ESRCH says it is gone.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // A zombie still answers kill(0); it is not alive for our purposes.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The process's argv, or null when it is gone. Guards against pid reuse. */
export function commandLine(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return null;
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        return;
      }
      await sleep(50);
      if (!isAlive(pid)) return;
    }
    await sleep(50);
  }
}

/** Shells: one whose working directory is in a stack is a person's (`cd .slipway/stack` to read a log), never the stack's. */
const SHELLS = new Set(['sh', 'dash', 'bash', 'zsh', 'fish', 'ksh', 'tcsh', 'csh']);

/** This process's parent, its parent's parent, and so on to init. */
export function ancestors(pid = process.pid): Set<number> {
  const found = new Set<number>();
  for (let current = pid; current > 1 && !found.has(current);) {
    const fields = processStat(current);
    if (fields === null) break;
    current = Number(fields[1]);
    if (current > 0) found.add(current);
  }
  return found;
}

/** Still the process that had this start time (processStart), not another that reused its pid; any process with the pid when the start time is not known. */
export function stillRuns(pid: number, start: string | undefined): boolean {
  return isAlive(pid) && (start === undefined || processStart(pid) === start);
}

/** Its argv names a path under `dir`, or it works there and is not a shell (see processesUnder). Throws once it is gone. */
function startedOrWorksIn(pid: string, dir: string, prefix: string): boolean {
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  if (argv.some((arg) => arg.includes(prefix) || arg === dir)) return true;
  const cwd = readlinkSync(`/proc/${pid}/cwd`);
  return (cwd === dir || cwd.startsWith(prefix)) && !SHELLS.has(readFileSync(`/proc/${pid}/comm`, 'utf8').trim().replace(/^-/, ''));
}

/** Gone, or a process of another session than this one's with a terminal of its own: a person's, in another terminal. */
function goneOrAnotherTerminal(pid: number, ownSession: string | undefined): boolean {
  const fields = processStat(pid);
  return fields === null || (fields[4] !== '0' && fields[3] !== ownSession);
}

/**
 * Pids of processes started from, or working in, `dir`: their argv names a
 * path under it, or their working directory is under it (redis rewrites its
 * title but chdirs to its data dir). How a stack finds what its tests
 * started, whatever they started. Never this process or one it runs under
 * (the shell or `timeout` that ran `slipway-devstack stop --dir <dir>`),
 * never a shell that is only working there, and never what a person runs
 * in another terminal (`less .slipway/stack/redis/redis.log`, an editor):
 * a process of another session with a terminal of its own. What a stack
 * and its tests start is either in this process's session or, started
 * detached, in a session without a terminal.
 */
export function processesUnder(dir: string): number[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const spared = ancestors();
  const ownSession = processStat('self')?.[3];
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid || spared.has(Number(name))) continue;
    try {
      if (startedOrWorksIn(name, dir, prefix) && !goneOrAnotherTerminal(Number(name), ownSession)) found.push(Number(name));
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

/** Polls `probe` until it returns a truthy value; throws naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      // The probe's own verdict that waiting longer is pointless.
      if (err instanceof ExitedError) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${options.timeoutMs ?? 30_000} ms waiting for ${what}${why}`);
    }
    await sleep(options.intervalMs ?? 100);
  }
}

/** Lowest port handed out: clear of the well-known and registered ports services like to take. */
const LOWEST = 10_000;

/**
 * A TCP port free on `host` right now, chosen at random below the kernel's
 * ephemeral range (`ip_local_port_range`). Ports in that range are what
 * outgoing connections get, and Docker publishes `HostPort: ""` bindings
 * from it too, counting up from its start: a port the kernel handed out
 * there could be taken by some container's docker-proxy before the test
 * binds it (seen: a test's nginx could not listen on its app's port, and a
 * container answered there instead until it stopped).
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const below = ephemeralStart();
  if (below - LOWEST >= 1000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = LOWEST + Math.floor(Math.random() * (below - LOWEST));
      if (await isPortFree(port, host)) return port;
    }
  }
  const port = await bindOnce(host, 0);
  if (port === null) throw new Error(`no free port on ${host}`);
  return port;
}

/** Whether `port` can be bound on `host` right now. */
export async function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return (await bindOnce(host, port)) !== null;
}

function ephemeralStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : LOWEST;
  } catch {
    return LOWEST;
  }
}

/** Binds `port` (0: the kernel's choice) and lets it go; the port, or null when it is taken. */
function bindOnce(host: string, port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(null) : reject(err)));
    server.listen(port, host, () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : null));
    });
  });
}

/** A Slipway process started the way a user would, with its output kept for assertions. */
export interface RunningProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or 128+signal). */
  exited: Promise<number>;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number>;
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

/**
 * `keepChars`: how much of the output `output()` keeps, its end (default
 * all: a test's process is short-lived; `npm start`'s run for days).
 */
export function startProcess(argv: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; keepChars?: number } = {}): RunningProcess {
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...options.env }, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = options.keepChars ?? Infinity;
  let output = '';
  const add = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > keep) output = output.slice(-keep);
  };
  child.stdout!.on('data', add);
  child.stderr!.on('data', add);
  const exited = new Promise<number>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15)));
    // Not started (no such binary, not executable): unheard, this event would end the caller, and the services it started would run on.
    child.on('error', (err) => {
      output += `cannot run ${argv[0]}: ${err.message}\n`;
      resolve(127);
    });
  });
  return {
    child,
    output: () => output,
    exited,
    async stop(signal = 'SIGTERM', graceMs = 30_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return exited;
    },
    waitForOutput: (pattern, timeoutMs = 30_000) => waitFor(`output matching ${pattern}`, () => pattern.test(output), { timeoutMs }).then(() => undefined),
  };
}
