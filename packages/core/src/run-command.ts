import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { SlipwayError } from './slipway-error.js';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command and everything it started (SIGKILL) after this long. Default: no limit. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is closed afterwards. */
  input?: string;
  /** Called with each line of stdout and stderr as it arrives (a line past MAX_LINE_CHARS in pieces). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Stops the command and everything it started: SIGTERM, then SIGKILL after STOP_GRACE_MS. */
  signal?: AbortSignal;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** What a command may print, stdout and stderr together, before it is killed as running away. */
export const MAX_OUTPUT_BYTES = 32 * 1024 * 1024;
/** A line longer than this reaches onLine in pieces. */
const MAX_LINE_CHARS = 64 * 1024;
/** How long a cancelled command has between SIGTERM and SIGKILL. */
const STOP_GRACE_MS = 5_000;
/**
 * How long its output may stay open once the command has exited: a
 * process it started and left running (a daemon, an orphan past a kill)
 * holding the pipes must not hold its caller.
 */
const EXITED_OUTPUT_MS = 1_000;

/** A command that ran and failed; `tail` holds the last lines of its output. */
export class CommandError extends SlipwayError {
  readonly argv: readonly string[];
  readonly exitCode: number | null;
  readonly tail: string;

  constructor(argv: readonly string[], exitCode: number | null, tail: string, reason?: string) {
    const what = reason ?? (exitCode === null ? 'was killed' : `exited with code ${exitCode}`);
    super('command_failed', `${argv.join(' ')} ${what}${tail ? `:\n${tail}` : ''}`);
    this.name = 'CommandError';
    this.argv = argv;
    this.exitCode = exitCode;
    this.tail = tail;
  }
}

/**
 * Runs an argv array. Never a shell: there is no string to interpolate into,
 * so a hostile sha or branch name is just an odd argument.
 *
 * The command runs in a process group of its own, so that a timeout or a
 * cancel stops what it started too (`sudo nginx -t`, a wrapper script):
 * killing the direct child alone would leave the rest running, holding
 * the output pipes and with them the call. The call settles once the
 * command has exited and its output is read, or EXITED_OUTPUT_MS after.
 */
export function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new SlipwayError('invalid_input', 'empty command'));
  if (options.signal?.aborted) return Promise.reject(new CommandError(argv, null, '', 'was not run: cancelled'));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      shell: false,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    const out = { stdout: '', stderr: '' };
    const partial = { stdout: '', stderr: '' };
    let printed = 0;
    let stopped: string | null = null;
    const timers: NodeJS.Timeout[] = [];
    const after = (ms: number, then: () => void) => timers.push(setTimeout(then, ms).unref());
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        child.kill(signal);
      }
    };
    const stop = (why: string, signal: NodeJS.Signals) => {
      if (stopped !== null || child.pid === undefined) return;
      stopped = why;
      killGroup(signal);
      if (signal !== 'SIGKILL') after(STOP_GRACE_MS, () => killGroup('SIGKILL'));
    };
    // One decoder per stream: a character whose bytes a pipe's chunk boundary splits is decoded whole, not as two U+FFFD.
    const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
    const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      printed += chunk.length;
      if (printed > MAX_OUTPUT_BYTES) return stop(`printed more than ${MAX_OUTPUT_BYTES / 1024 / 1024} MB`, 'SIGKILL');
      const text = decoders[stream].write(chunk);
      out[stream] += text;
      if (!options.onLine) return;
      const lines = (partial[stream] + text).split('\n');
      partial[stream] = lines.pop() ?? '';
      while (partial[stream].length > MAX_LINE_CHARS) {
        lines.push(partial[stream].slice(0, MAX_LINE_CHARS));
        partial[stream] = partial[stream].slice(MAX_LINE_CHARS);
      }
      for (const line of lines) options.onLine(line, stream);
    };
    child.stdout.on('data', collect('stdout'));
    child.stderr.on('data', collect('stderr'));
    // A command that exits without reading its input: the write's EPIPE is its exit's business, not an uncaught error.
    child.stdin.on('error', () => {});
    if (options.timeoutMs) after(options.timeoutMs, () => stop(`was killed after ${options.timeoutMs! / 1000} s (its timeout)`, 'SIGKILL'));
    const onAbort = () => stop('was stopped: cancelled', 'SIGTERM');
    options.signal?.addEventListener('abort', onAbort, { once: true });

    let settled = false;
    const settle = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      timers.forEach(clearTimeout);
      options.signal?.removeEventListener('abort', onAbort);
      // Stopped: whatever of its group outlived the command (a grandchild that ignored SIGTERM) goes too.
      if (stopped !== null) killGroup('SIGKILL');
      child.stdout.destroy();
      child.stderr.destroy();
      for (const stream of ['stdout', 'stderr'] as const) {
        const rest = decoders[stream].end();
        out[stream] += rest;
        partial[stream] += rest;
        if (partial[stream] && options.onLine) options.onLine(partial[stream], stream);
      }
      const exit = code ?? (signal ? null : 1);
      if (exit === 0 && stopped === null) resolve({ code: 0, stdout: out.stdout, stderr: out.stderr });
      else reject(new CommandError(argv, exit, lastLines(`${out.stderr}\n${out.stdout}`, 20), stopped ?? undefined));
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      timers.forEach(clearTimeout);
      options.signal?.removeEventListener('abort', onAbort);
      const reason = err.code === 'ENOENT' ? 'could not be started: command not found' : `could not be started: ${err.message}`;
      reject(new CommandError(argv, null, '', reason));
    });
    child.on('exit', (code, signal) => after(EXITED_OUTPUT_MS, () => settle(code, signal)));
    child.on('close', (code, signal) => settle(code, signal));
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}

export function lastLines(text: string, count: number): string {
  return text
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line.length > 0)
    .slice(-count)
    .join('\n');
}

/**
 * The fields of a /proc/<pid>/stat text after the command name: [0] is
 * field 3 of stat(5) (the state), [1] the parent pid, [2] the process
 * group, [3] the session, [4] the controlling terminal, [11] and [12] user
 * and system time, [19] the start time. The command name, in parentheses,
 * may hold spaces and parentheses: fields are counted after its last ')'.
 */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** statFields of a process (or `self`), or null when there is no such process. */
export function processStat(pid: number | 'self'): string[] | null {
  try {
    return statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/**
 * When a process started, in clock ticks since boot (field 22 of
 * /proc/<pid>/stat), or null when there is no such process: with its pid,
 * what names one process for good (pids are reused, start times are not).
 * A zombie (exited, not yet reaped: for ever under an init that reaps
 * nothing, as in some containers) is no process.
 */
export function processStart(pid: number): string | null {
  const stat = processStat(pid);
  return stat && stat[0] !== 'Z' ? stat[19] ?? null : null;
}

/**
 * This process's pid namespace (`pid:[4026531836]`), or null where /proc
 * does not say. A pid names a process only inside its own namespace: a
 * worker in another container sharing a workdir or a host name has its own.
 */
export const OWN_PID_NAMESPACE: string | null = (() => {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return null;
  }
})();

/** Whether a process with this pid exists (under any user: EPERM says it does). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
