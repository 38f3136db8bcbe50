import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, stopProcess } from './processes.js';
import { startNginx, type NginxService } from './services.js';
import type { StackState } from './stack.js';

/*
 * The testing entry: what a test sets its world up with, in one import.
 * Defined here: the stack of the run, names, temporary directories, an nginx
 * of the test's own, a slipway.yml for a test. Named below: the helpers that
 * live with the code `npm start` runs too, so tests find them here as well.
 * A bench run by node, or a vitest global setup, may import this module:
 * vitest refuses to be imported there, and only testStack needs it.
 */
export { freePort, startProcess, stopProcess, waitFor, type RunningProcess } from './processes.js';
export { ensureSystemPackages, startDnsmasq, startEtcd, startRedis, type DnsmasqService, type EtcdService, type NginxService, type RedisService } from './services.js';
export { startLoad, type LoadOptions, type LoadReport } from './load.js';
export { giteaSignature, githubSignature, startFakeForge, type FakeForge, type FakeForgeOptions, type SeenStatus } from './fake-forge.js';
export {
  AFTER_OUTPUT_LINE, ENDLESS_LINE, HUGE_LINE_UNIT, commitVersion, createFixtureRepo, git, writeFixtureApp,
  type FixtureOptions, type FixtureRepo, type FixtureVariant,
} from './fixture-app.js';
export { BASE_IMAGE } from './base-image.js';
export { startWedgedPeer, type WedgedPeer } from './wedged-peer.js';
export { startRedisRelay, startTcpRelay, type RedisRelay, type RelayedConnection, type TcpRelay, type TcpRelayHooks } from './tcp-relay.js';
export { watchEventLoop, type EventLoopReport } from './event-loop-watch.js';
export { startGitHttpServer, type GitHttpServer, type GitHttpServerOptions } from './git-http-server.js';

const vitest = await import('vitest').catch(() => null);

/** The stack started by the global setup. Only inside a vitest test. */
export function testStack(): StackState {
  if (!vitest) throw new Error('testStack() is for tests run by vitest');
  return vitest.inject('stack');
}

/**
 * A fresh app name, `t<stack id>-<random>`: unique per test, and
 * recognisable so the stack's teardown removes any container or image a
 * test left behind.
 */
export function testAppName(): string {
  return `t${testStack().id}-${randomBytes(4).toString('hex')}`;
}

/** A unique name for queues, etcd prefixes, files: `<prefix>-<random>`. */
export function uniqueName(prefix = 'test'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/**
 * A loopback network of the test's own, `127.a.b.c/<bits>` (24-30) picked at
 * random outside 127.0.x.x: a dns app's address pool, or addresses to publish
 * on. Allocation counts every container of the engine, and two runs may
 * share one engine (a developer's run beside CI): a fixed pool was exhausted
 * or double-booked by the other run's containers.
 */
export function uniqueLoopbackNet(bits = 24): string {
  if (!Number.isInteger(bits) || bits < 24 || bits > 30) throw new Error(`uniqueLoopbackNet: bits must be 24-30, got ${bits}`);
  const [a = 0, b = 0, c = 0] = randomBytes(3);
  const size = 2 ** (32 - bits);
  return `127.${64 + (a % 190)}.${b}.${c - (c % size)}/${bits}`;
}

/**
 * A temporary directory and the function that removes it. Inside the
 * stack's directory when there is a stack, so that whatever a test starts
 * there (its own nginx, etcd, redis) is found and stopped with the stack
 * even if the test never cleans up.
 */
export function tempDir(prefix = 'slipway-test-'): { path: string; remove: () => void } {
  const stackDir = process.env.SLIPWAY_STACK_DIR;
  const parent = stackDir ? join(stackDir, 'tmp') : tmpdir();
  mkdirSync(parent, { recursive: true });
  const path = mkdtempSync(join(parent, prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * An nginx of the test's own (isolatedNginx) in a temporary directory, and
 * the `nginx:` settings of slipway.yml pointing at it; `stop()` stops it
 * and removes the directory.
 */
export async function ownNginx(): Promise<{ service: NginxService; settings: { conf_dir: string; check_cmd: string[]; reload_cmd: string[] }; stop: () => Promise<void> }> {
  const dir = tempDir('slipway-nginx-');
  const service = await isolatedNginx(dir.path);
  return {
    service,
    settings: { conf_dir: service.confDir, check_cmd: service.checkCmd, reload_cmd: service.reloadCmd },
    stop: async () => {
      await service.stop();
      dir.remove();
    },
  };
}

type NginxSettings = Awaited<ReturnType<typeof ownNginx>>['settings'];
export type TwoTierSettings = NginxSettings & { front: NginxSettings & { socket_dir: string } };

/**
 * Two tiers (`nginx.front`) before `back` (an ownNginx's settings): a front
 * nginx of the test's own and a socket directory its workers can reach
 * (they run as another user than the test), with the `nginx:` settings of
 * both; `stop()` stops the front and removes both directories.
 */
export async function ownFrontTier(back: NginxSettings): Promise<{ service: NginxService; settings: TwoTierSettings; stop: () => Promise<void> }> {
  const front = await ownNginx();
  const sockets = tempDir('slipway-sockets-');
  chmodSync(sockets.path, 0o755);
  return {
    service: front.service,
    settings: { ...back, front: { ...front.settings, socket_dir: join(sockets.path, 'back') } },
    stop: async () => {
      await front.stop();
      sockets.remove();
    },
  };
}

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

/** GET through nginx, the body as text, or null on any error. */
export async function fetchText(url: string, init: RequestInit = {}): Promise<{ status: number; body: string } | null> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  } catch {
    return null;
  }
}
