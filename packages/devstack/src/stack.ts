import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Docker from 'dockerode';
import { processStart } from '@slipway/core/run-command';
import { freePort, commandLine, isAlive, isPortFree, stillRuns, stopProcess, stopProcessesUnder } from './processes.js';
import { ensureSystemPackages, dnsmasqAnswers, ownDockerd, startDnsmasq, type DnsmasqService, dockerAnswers, ensureDockerEngine, type DockerEngine, etcdHealthy, startEtcd, type EtcdService, startNginx, type NginxService, redisAnswers, startRedis, type RedisService, DOCKER_SOCKET } from './services.js';

export type ServiceName = 'docker' | 'redis' | 'etcd' | 'nginx' | 'dns' | 'front';
/** What a stack starts unless told otherwise. */
export const ALL_SERVICES: readonly ServiceName[] = ['docker', 'redis', 'etcd', 'nginx'];
/**
 * Started only when asked for (`services: [...ALL_SERVICES, 'dns']`,
 * `SLIPWAY_TEST_SERVICES=...,dns`): dnsmasq for `routing: dns` apps, fed
 * by Slipway through its hosts directory; `front`, a second nginx that
 * clients connect to, in front of the stack's nginx (two tiers,
 * `nginx.front`: npm start's).
 */
export const OPTIONAL_SERVICES: readonly ServiceName[] = ['dns', 'front'];

/** What `stack.json` holds: enough to reuse, probe and stop every part. */
export interface StackState {
  /** Six hex digits; test app names start with `t<id>-` so leftovers are attributable. */
  id: string;
  dir: string;
  /** The process that owns the stack; when it is dead the stack is stale. */
  ownerPid: number;
  /** Its start time (`/proc/<pid>/stat`), so that a pid reused after a crash is not taken for it. Absent in older states. */
  ownerStart?: string;
  /** Temporary stacks are deleted when stopped; a named one (npm start) keeps its directory. */
  temporary: boolean;
  docker?: DockerEngine;
  redis?: RedisService;
  etcd?: EtcdService;
  nginx?: NginxService;
  dns?: DnsmasqService;
  /** The front nginx of two tiers; `socketDir` is where the stack's nginx (the back) listens for each app. */
  front?: NginxService & { socketDir: string };
}

/** Where Slipway writes its files for a stack's nginx (`nginx.conf_dir`), or for its front (`nginx.front.conf_dir`). */
export const stackConfDir = (stackDir: string, tier: 'back' | 'front') => join(stackDir, tier === 'back' ? 'nginx' : 'nginx-front', 'conf.d');

/** Where the back nginx of a stack with a front listens for each app (`nginx.front.socket_dir`). */
export const frontSocketDir = (stackDir: string) => join(stackDir, 'sockets');

const STACK_GLOB_PREFIX = 'slipway-stack-';
/** A stack directory without a state file younger than this is being created, not abandoned. */
const STARTING_GRACE_MS = 120_000;
const stateFile = (dir: string) => join(dir, 'stack.json');

export function readStack(dir: string): StackState | null {
  try {
    return JSON.parse(readFileSync(stateFile(dir), 'utf8')) as StackState;
  } catch {
    return null;
  }
}

/** Written whole (a rename): a reader never takes a half-written state for a dead owner's. */
function writeStack(state: StackState): void {
  const tmp = `${stateFile(state.dir)}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
  renameSync(tmp, stateFile(state.dir));
}

/**
 * Is this pid still the process we started for this stack (not a reused
 * pid)? Its argv names the stack directory, or (redis rewrites its process
 * title) the address it listens on.
 */
function ours(pid: number | undefined, dir: string, address?: string): pid is number {
  if (!pid || !isAlive(pid)) return false;
  return (commandLine(pid) ?? []).some((arg) => arg.includes(dir) || (address !== undefined && arg.includes(address)));
}

/** The process that owns the stack still runs (the same process: not another that reused its pid). */
export function ownerRuns(state: StackState): boolean {
  return stillRuns(state.ownerPid, state.ownerStart);
}

/** `start` or `stop` of a stack that another running process owns (npm start's, or a test run's). */
export class StackInUseError extends Error {
  constructor(readonly state: StackState) {
    super(`the stack in ${state.dir} belongs to process ${state.ownerPid}, which is running (npm start, or a test run): stop that process, and its stack stops with it`);
    this.name = 'StackInUseError';
  }
}

/** Throws StackInUseError when another running process owns the stack in `dir`. */
export function assertStackFree(dir: string): void {
  const state = readStack(dir);
  if (state && state.ownerPid !== process.pid && ownerRuns(state)) throw new StackInUseError(state);
}

export interface StartStackOptions {
  /** Default: a new temporary directory. An existing stack there is reused. */
  dir?: string;
  services?: readonly ServiceName[];
  /** Install missing Debian packages first. Default true. */
  install?: boolean;
  log?: (line: string) => void;
}

/**
 * The port a service restarted had, when it is still free (its URL then
 * stays what it was); else a free one: another process took it meanwhile,
 * and would answer the new service's readiness probe in its place.
 */
async function portFor(previous: number | undefined): Promise<number> {
  return previous !== undefined && (await isPortFree(previous)) ? previous : freePort();
}

/**
 * Starts (or reuses) Docker, Redis, etcd and nginx on loopback. Idempotent:
 * a second start on the same directory reuses what still answers and
 * restarts what does not. A start that fails stops the stack (what it
 * reused too) before it throws.
 */
export async function startStack(options: StartStackOptions = {}): Promise<StackState> {
  const log = options.log ?? (() => {});
  const services = options.services ?? ALL_SERVICES;
  if (options.install !== false) ensureSystemPackages(undefined, log);
  await sweepStaleStacks(log);
  const temporary = options.dir === undefined;
  const freshId = randomBytes(3).toString('hex');
  const dir = options.dir ?? join(tmpdir(), `${STACK_GLOB_PREFIX}${freshId}`);
  mkdirSync(dir, { recursive: true });
  // Reused, not taken: rewriting the owner would make the running one's stack look dead to the others.
  assertStackFree(dir);
  const previous = readStack(dir);
  const state: StackState = { id: previous?.id ?? freshId, dir, ownerPid: process.pid, ownerStart: processStart(process.pid) ?? undefined, temporary: previous?.temporary ?? temporary };
  // Claimed before anything starts: a concurrent run's sweep must see whose directory this is.
  writeStack(state);
  if (!state.temporary) announceNamed(state, log);

  try {
    // Each part is written to the state file as it answers: a start killed half-way leaves a
    // stack.json naming what runs, for `stop`, the next start and the sweep of stale stacks.
    if (services.includes('docker')) {
      const reuse = previous?.docker && (await dockerAnswers());
      // The engine answering may not be the dockerd this stack started (the host's own, after a reboot): that one is not stopped.
      state.docker = reuse ? (ownDockerd(previous!.docker) ? previous!.docker : { host: previous!.docker!.host }) : await ensureDockerEngine(dir);
      writeStack(state);
      const orphans = await removeOrphanTestArtifacts(state.id).catch((err: Error) => {
        log(`cleanup of killed runs' test containers failed: ${err.message}`);
        return 0;
      });
      if (orphans > 0) log(`removed the test containers of ${orphans} stack${orphans === 1 ? '' : 's'} that no longer run${orphans === 1 ? 's' : ''}`);
    }
    if (services.includes('redis')) {
      const p = previous?.redis;
      state.redis = p && ours(p.pid, dir, `127.0.0.1:${p.port}`) && (await redisAnswers(p.port)) ? p : await startRedis(join(dir, 'redis'), await portFor(p?.port));
      writeStack(state);
    }
    if (services.includes('etcd')) {
      const p = previous?.etcd;
      state.etcd = p && ours(p.pid, dir) && (await etcdHealthy(p.url))
        ? p
        : await startEtcd(join(dir, 'etcd'), await portFor(p?.port), await portFor(p?.peerPort));
      writeStack(state);
    }
    if (services.includes('nginx')) {
      const p = previous?.nginx;
      if (p && ours(p.pid, dir)) state.nginx = p;
      else {
        // Its files may listen on unix sockets (two tiers): one left by an nginx that was killed would
        // keep it from starting, and no back of this stack runs now to be listening on it.
        clearSockets(frontSocketDir(dir));
        state.nginx = await startNginx(join(dir, 'nginx'), await portFor(p?.statusPort), stackConfDir(dir, 'back'));
      }
      writeStack(state);
    }
    if (services.includes('front')) {
      const p = previous?.front;
      const socketDir = frontSocketDir(dir);
      mkdirSync(socketDir, { recursive: true, mode: 0o755 });
      state.front = p && ours(p.pid, dir) ? p : { ...(await startNginx(join(dir, 'nginx-front'), await portFor(p?.statusPort), stackConfDir(dir, 'front'))), socketDir };
      writeStack(state);
    }
    if (services.includes('dns')) {
      const p = previous?.dns;
      state.dns = p && ours(p.pid, dir) && (await dnsmasqAnswers(p.port, p.domain)) ? p : await startDnsmasq(join(dir, 'dns'), await portFor(p?.port));
    }
  } catch (err) {
    // The caller gets no state to stop: what started before the failure stops here, or nothing would stop it.
    // Its directory stays (a temporary one until the next start's sweep): its services' logs say why.
    log(`the stack did not start (${(err as Error).message}): stopping it; its logs are in ${dir}`);
    await stopStack({ ...state, temporary: false }, log).catch((stopErr: Error) => log(`stopping the stack failed too: ${stopErr.message}`));
    throw err;
  }
  writeStack(state);
  log(`stack ${state.id} up in ${dir}`);
  return state;
}

/** Stops every part this stack started, removes its test leftovers and (if temporary) its directory. */
export async function stopStack(state: StackState, log: (line: string) => void = () => {}): Promise<void> {
  if (state.docker && (await dockerAnswers())) {
    await removeTestArtifacts(state.id).catch((err: Error) => log(`cleanup of test containers failed: ${err.message}`));
  }
  if (state.front && ours(state.front.pid, state.dir)) await stopProcess(state.front.pid);
  if (state.nginx && ours(state.nginx.pid, state.dir)) await stopProcess(state.nginx.pid);
  if (state.dns && ours(state.dns.pid, state.dir)) await stopProcess(state.dns.pid);
  if (state.etcd && ours(state.etcd.pid, state.dir)) await stopProcess(state.etcd.pid);
  if (state.redis && ours(state.redis.pid, state.dir, `127.0.0.1:${state.redis.port}`)) await stopProcess(state.redis.pid);
  // Whatever tests started inside the stack's directory (their own nginx, etcd, redis) goes too.
  const strays = await stopProcessesUnder(state.dir);
  if (strays > 0) log(`stopped ${strays} process${strays === 1 ? '' : 'es'} left under ${state.dir}`);
  if (ownDockerd(state.docker) && liveStacks().every((s) => s.dir === state.dir)) {
    await stopProcess(state.docker.pid, 30_000);
  }
  if (state.temporary) rmSync(state.dir, { recursive: true, force: true });
  else if (existsSync(stateFile(state.dir))) rmSync(stateFile(state.dir));
  if (readLink(namedLink(state.id)) === resolve(state.dir)) removeLink(namedLink(state.id));
  log(`stack ${state.id} stopped`);
}

/** Removes the unix socket files in `dir` (none there, or no such directory: nothing to do). */
function clearSockets(dir: string): void {
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    const path = join(dir, name);
    if (lstatSync(path).isSocket()) rmSync(path, { force: true });
  }
}

function stackDirs(): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith(STACK_GLOB_PREFIX)).map((name) => join(tmpdir(), name));
}

/*
 * A named stack (npm start's `.slipway/stack`) lives outside the temporary
 * directory, where the others look; it is announced there by a link to
 * its directory while it runs. Without it, a test run that had started
 * dockerd would stop it at its end under an `npm start` that reuses it.
 */
const NAMED_LINK_PREFIX = 'slipway-named-stack-';
const namedLink = (id: string) => join(tmpdir(), `${NAMED_LINK_PREFIX}${id}`);

/** Best effort: a stack not announced is only unknown to the others, as before there were links. */
function announceNamed(state: StackState, log: (line: string) => void): void {
  const link = namedLink(state.id);
  const dir = resolve(state.dir);
  if (readLink(link) === dir) return;
  try {
    removeLink(link);
    symlinkSync(dir, link);
  } catch (err) {
    log(`could not announce the stack in ${tmpdir()} (${(err as Error).message}): a test run started meanwhile may stop the Docker engine it shares`);
  }
}

/** Removes `path` only if it is a symbolic link (never a directory or file someone else put there); errors are ignored. */
function removeLink(path: string): void {
  try {
    if (lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink()) rmSync(path, { force: true });
  } catch {
    // Another user's link in a sticky /tmp: not ours to remove.
  }
}

function readLink(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

/** The stacks whose owner runs: the temporary ones and the named ones announced; a link whose stack is gone is removed. */
export function liveStacks(): StackState[] {
  const named = readdirSync(tmpdir()).filter((name) => name.startsWith(NAMED_LINK_PREFIX)).map((name) => join(tmpdir(), name)).flatMap((link) => {
    const state = readStack(link);
    if (state && ownerRuns(state)) return [state];
    // Its owner was killed (npm start's services then wait for the next start, which reuses them): nothing runs it.
    // Only a state read whole and naming a dead owner says so, or a link to a directory that is gone (a stack is
    // announced once its directory and state are there); an unreadable one may be another user's.
    if (state || !existsSync(link)) removeLink(link);
    return [];
  });
  return [...stackDirs().map(readStack).filter((s): s is StackState => s !== null && ownerRuns(s)), ...named];
}

/**
 * Stacks whose owner died without stopping them (a killed test run) are
 * stopped and deleted, so nothing from an earlier run lingers.
 */
export async function sweepStaleStacks(log: (line: string) => void = () => {}): Promise<void> {
  for (const dir of stackDirs()) {
    const state = readStack(dir);
    if (state && ownerRuns(state)) continue;
    if (state) {
      log(`stopping stale stack ${state.id} (owner ${state.ownerPid} is gone)`);
      // Its test containers go with it only if Docker answers now: killed with its run, the engine comes back with the
      // next start and brings them up again (restart policy). Its id is kept for that start to remove them, however young.
      try {
        appendFileSync(SWEPT_STACKS, `${state.id}\n`);
      } catch {
        // Another user's file in the shared temporary directory: its containers wait for the 30 minutes' rule.
      }
      await stopStack({ ...state, docker: state.docker ? { host: state.docker.host } : undefined });
      continue;
    }
    // No state file: a stack being created this instant (leave it), or the remains of one that died starting.
    const age = Date.now() - (statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? 0);
    if (age < STARTING_GRACE_MS) continue;
    await stopProcessesUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The environment a child process needs to find this stack. */
export function stackEnv(state: StackState): Record<string, string> {
  const env: Record<string, string> = { SLIPWAY_STACK_DIR: state.dir, SLIPWAY_STACK_ID: state.id };
  if (state.redis) env.SLIPWAY_STACK_REDIS = state.redis.url;
  if (state.etcd) env.SLIPWAY_STACK_ETCD = state.etcd.url;
  if (state.docker) env.SLIPWAY_STACK_DOCKER = state.docker.host;
  if (state.dns) {
    env.SLIPWAY_STACK_DNS = state.dns.server;
    env.SLIPWAY_STACK_DNS_HOSTS = state.dns.hostsDir;
  }
  return env;
}

/** The ids of stale stacks swept (sweepStaleStacks), one per line, whose test containers the next start with Docker removes. */
const SWEPT_STACKS = join(tmpdir(), 'slipway-swept-stacks');

/** A test container this old, of a stack no longer running, is a killed run's: removed by the next start. */
export const ORPHAN_TEST_CONTAINER_MS = 30 * 60_000;

/**
 * The stack ids whose test containers (apps named `t<id>-…`) are all older
 * than `olderThanMs` and that no live stack has: a run killed before its
 * stop. Judged by the newest container of each id, so one container a
 * long run leaked early never condemns the run. Pure.
 */
export function orphanedStackIds(containers: ReadonlyArray<{ Labels: Record<string, string>; Created: number }>, live: ReadonlySet<string>, nowMs: number, olderThanMs = ORPHAN_TEST_CONTAINER_MS): string[] {
  const newest = new Map<string, number>();
  for (const info of containers) {
    const id = /^t([0-9a-f]{6})-/.exec(info.Labels['slipway.app'] ?? '')?.[1];
    if (id && !live.has(id)) newest.set(id, Math.max(newest.get(id) ?? 0, info.Created));
  }
  return [...newest].filter(([, created]) => created * 1000 < nowMs - olderThanMs).map(([id]) => id);
}

/**
 * Removes the test containers and images of stacks that are gone
 * (orphanedStackIds): a run killed before its stop left its apps'
 * containers running, and their restart policy brings them back with
 * every engine start. Those of stacks the sweep stopped go whatever their
 * age; others once their newest container is ORPHAN_TEST_CONTAINER_MS old.
 * Live stacks are those under the temporary directory and `own`; a stack started elsewhere with `--dir` and still testing is
 * not known here, but its newest container is young. Returns how many
 * stacks were cleaned.
 */
export async function removeOrphanTestArtifacts(own: string, docker = new Docker({ socketPath: DOCKER_SOCKET })): Promise<number> {
  const live = new Set([own, ...liveStacks().map((s) => s.id)]);
  // Swept stacks are gone for certain, whatever their containers' age.
  const sweptText = existsSync(SWEPT_STACKS) ? readFileSync(SWEPT_STACKS, 'utf8') : '';
  const swept = sweptText.split('\n').filter((id) => /^[0-9a-f]{6}$/.test(id) && !live.has(id));
  const orphaned = new Set([...swept, ...orphanedStackIds(await docker.listContainers({ all: true, filters: { label: ['slipway.app'] } }), live, Date.now())]);
  let cleaned = 0;
  for (const id of orphaned) if ((await removeTestArtifacts(id, docker)) > 0) cleaned++;
  // Forgotten once removed (a failure above keeps them for the next start), unless a sweep added some meanwhile.
  if (sweptText && existsSync(SWEPT_STACKS) && readFileSync(SWEPT_STACKS, 'utf8') === sweptText) rmSync(SWEPT_STACKS, { force: true });
  return cleaned;
}

/**
 * Removes containers and images of test apps named `t<stackId>-…`, the
 * naming every test uses, so a run cleans up after itself even when a test
 * did not.
 */
export async function removeTestArtifacts(stackId: string, docker = new Docker()): Promise<number> {
  const prefix = `t${stackId}-`;
  const containers = await docker.listContainers({ all: true, filters: { label: ['slipway.app'] } });
  let removed = 0;
  for (const info of containers) {
    if (!(info.Labels['slipway.app'] ?? '').startsWith(prefix)) continue;
    await docker.getContainer(info.Id).remove({ force: true, v: true }).catch(() => {});
    removed++;
  }
  const images = await docker.listImages();
  for (const image of images) {
    for (const tag of image.RepoTags ?? []) {
      if (tag.startsWith(`slipway/${prefix}`)) await docker.getImage(tag).remove({ force: true }).catch(() => {});
    }
  }
  return removed;
}
