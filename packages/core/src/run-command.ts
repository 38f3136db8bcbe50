import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { SlipwayError } from './slipway-error.js';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command (SIGKILL) after this long. Default: no limit. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is closed afterwards. */
  input?: string;
  /** Called with each line of stdout and stderr as it arrives. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  signal?: AbortSignal;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

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
 */
export function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new SlipwayError('invalid_input', 'empty command'));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      shell: false,
      stdio: ['pipe', 'pipe', 'pipe'],
      signal: options.signal,
    });
    let stdout = '';
    let stderr = '';
    const partial = { stdout: '', stderr: '' };
    const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (stream === 'stdout') stdout += text;
      else stderr += text;
      if (!options.onLine) return;
      const lines = (partial[stream] + text).split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const line of lines) options.onLine(line, stream);
    };
    child.stdout.on('data', collect('stdout'));
    child.stderr.on('data', collect('stderr'));
    const timer = options.timeoutMs
      ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs).unref()
      : undefined;
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      const reason = err.code === 'ENOENT' ? 'could not be started: command not found' : `could not be started: ${err.message}`;
      reject(new CommandError(argv, null, '', reason));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      for (const stream of ['stdout', 'stderr'] as const) {
        if (partial[stream] && options.onLine) options.onLine(partial[stream], stream);
      }
      const exit = code ?? (signal ? null : 1);
      if (exit === 0) resolve({ code: 0, stdout, stderr });
      else reject(new CommandError(argv, exit, lastLines(`${stderr}\n${stdout}`, 20)));
    });
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
 */
export function processStart(pid: number): string | null {
  return processStat(pid)?.[19] ?? null;
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
