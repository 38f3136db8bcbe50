import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { stopProcess } from './processes.js';
import { startNginx, type NginxService } from './services/nginx.js';
import type { StackState } from './stack.js';
import { waitFor } from './wait-for.js';

/** An nginx of the test's own (its conf dir, its ports), stopped by `stop()`. */
export async function isolatedNginx(dir: string): Promise<NginxService & { stop(): Promise<void> }> {
  const nginx = await startNginx(join(dir, 'nginx'), await freePort());
  return { ...nginx, stop: () => stopProcess(nginx.pid) };
}

export interface TestConfigOptions {
  stack: StackState;
  nginx: NginxService;
  /** Unique per test: every Redis key lives under it. */
  prefix: string;
  workdir: string;
  apps: Record<string, Record<string, unknown>>;
  /** Raw top-level overrides (worker, receiver, etcd, redis...). */
  extra?: Record<string, unknown>;
}

/**
 * A slipway.yml for a test, written as JSON (which is YAML) to `file`,
 * pointing at the stack's services and the test's own nginx.
 */
export function writeTestConfig(file: string, options: TestConfigOptions): string {
  const raw = {
    redis: options.stack.redis!.url,
    etcd: [options.stack.etcd!.url],
    docker: options.stack.docker?.host ?? 'unix:///var/run/docker.sock',
    workdir: options.workdir,
    queue: { prefix: options.prefix },
    nginx: { conf_dir: options.nginx.confDir, check_cmd: options.nginx.checkCmd, reload_cmd: options.nginx.reloadCmd },
    worker: { concurrency: 2, attempts: 3, backoff_ms: 500 },
    apps: options.apps,
    ...options.extra,
  };
  writeFileSync(file, JSON.stringify(raw, null, 2));
  return file;
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

export function startProcess(argv: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): RunningProcess {
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...options.env }, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15)));
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

/** GET through nginx, the body as text, or null on any error. */
export async function fetchText(url: string, init: RequestInit = {}): Promise<{ status: number; body: string } | null> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  } catch {
    return null;
  }
}

export { stopProcess };
