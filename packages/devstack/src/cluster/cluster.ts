import { type Dirent, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processStart, runCommand } from '@slipway/core/run-command';
import { commandLine, isAlive, processesUnder, stillRuns } from '../processes.js';
import { CLUSTER_PACKAGES, ensureSystemPackages } from '../services.js';
import { startEtcdCluster, type EtcdClusterState } from './etcd-cluster.js';
import { clusterNetwork, hostOf, networkPlan, pidsInNetns, runIpBatch, startHost, subnetsOverlap, type ClusterNetwork, type HostState } from './hosts.js';
import { REGISTRY_PORT, startRegistry, type RegistryState } from './registry.js';
import { formSwarm, type SwarmOptions, type SwarmState } from './swarm.js';

/**
 * The cluster harness: simulated hosts, a registry, a swarm and an etcd
 * cluster on this machine, recorded in `<dir>/cluster.json` and torn down
 * completely by `stopCluster`, or by the next start's sweep when its owner
 * was killed.
 *
 * Cluster n owns 10.77.<n>.0/24, the namespaces `slipway-c<n>-*`, the
 * root link `slipway-c<n>`, the cgroups `slipway-c<n>-h*` and the
 * directory `$TMPDIR/slipway-cluster-<n>`. Creating that directory is how a
 * harness claims n (mkdir is atomic), so two harnesses at once take
 * different subnets, and a sweep can find every part of a dead one from n
 * alone, even if its state file was never written.
 */

/*
 * The cluster entry (`@slipway/devstack/cluster`): startCluster and
 * stopCluster here, and what a test does to a running cluster's parts,
 * named from the files that hold them.
 */
export { ENGINE_PORT, hostDocker, setHostConnected, startHostEngine, stopHostEngine, type ClusterNetwork, type HostState, type SimulatedHost } from './hosts.js';
export { registryRepositories, type RegistryState } from './registry.js';
export { serviceEndpoints, setNodeAvailability, setNodeLabels, type SwarmOptions, type SwarmState, type TaskEndpoint } from './swarm.js';
export { etcdLeader, startEtcdMember, stopEtcdMember, waitForEtcdLeader, type EtcdClusterState, type EtcdMember } from './etcd-cluster.js';

const DIR_PREFIX = 'slipway-cluster-';
const STATE_FILE = 'cluster.json';
/** A cluster directory without a state file younger than this is being created, not abandoned. */
const STARTING_GRACE_MS = 60_000;
/** What a user who asks for nothing gets: the issue's three hosts. */
export const DEFAULT_HOSTS = 3;
/** Each host costs ~80 MB and a dockerd start; more than this is a mistake. */
const MAX_HOSTS = 16;

export interface ClusterOptions {
  /** Default 3. */
  hosts?: number;
  /** The registry on host 1 and its loopback forwarder. Default true. */
  registry?: boolean;
  /** `swarm init` / `join`; false leaves plain engines. Default true. */
  swarm?: boolean | SwarmOptions;
  /** Members of an etcd cluster on loopback (0: none). Default 0. */
  etcdMembers?: number;
  /** Install missing Debian packages first (docker-registry). Default true. */
  install?: boolean;
  log?: (line: string) => void;
}

/** What `cluster.json` holds: enough for another process to use every part, and for a sweep to stop it. */
export interface ClusterState {
  index: number;
  dir: string;
  ownerPid: number;
  /** The owner's start time: a reused pid is not the owner. */
  ownerStart?: string;
  network: ClusterNetwork;
  hosts: HostState[];
  registry?: RegistryState;
  swarm?: SwarmState;
  etcd?: EtcdClusterState;
  /** Milliseconds each part took to start, for the README's figures and the bench. */
  timings: Record<string, number>;
}

const clusterDir = (index: number) => join(tmpdir(), `${DIR_PREFIX}${index}`);

export function readCluster(dir: string): ClusterState | null {
  try {
    return JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as ClusterState;
  } catch {
    return null;
  }
}

function writeCluster(state: ClusterState): void {
  const temporary = join(state.dir, `${STATE_FILE}.tmp`);
  writeFileSync(temporary, JSON.stringify(state, null, 2) + '\n');
  // Renamed into place: a sweep reading it never sees half a file.
  renameSync(temporary, join(state.dir, STATE_FILE));
}

function ownerAlive(state: ClusterState): boolean {
  return stillRuns(state.ownerPid, state.ownerStart);
}

/** Subnets the root namespace already routes: a cluster never takes one that overlaps them. */
async function routedSubnets(): Promise<string[]> {
  const { stdout } = await runCommand(['ip', '-j', '-4', 'route', 'show', 'table', 'all']);
  return (JSON.parse(stdout) as Array<{ dst: string }>).map((r) => r.dst).filter((dst) => dst !== 'default' && /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dst));
}

/** Claims the lowest free cluster index: its directory created, its subnet routed nowhere yet. */
async function claimIndex(): Promise<{ index: number; dir: string }> {
  const routed = await routedSubnets();
  for (let index = 0; index < 255; index++) {
    const network = clusterNetwork(index);
    if (routed.some((dst) => subnetsOverlap(dst, network.subnet))) continue;
    const dir = clusterDir(index);
    try {
      mkdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw err;
    }
    return { index, dir };
  }
  throw new Error(`no free cluster subnet in ${clusterNetwork(0).subnet.replace('.0.0/24', '.0.0/16')}`);
}

/**
 * Starts N simulated hosts (default 3) with a registry on host 1 and a
 * swarm over them, and optionally an etcd cluster on loopback. Sweeps
 * clusters whose owner died first. Needs root (namespaces, mounts).
 * On failure, whatever was started is torn down before the error is thrown.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<ClusterState> {
  const log = options.log ?? (() => {});
  if (process.getuid?.() !== 0) throw new Error('the cluster harness needs root: it creates network namespaces and mounts cgroups');
  if (options.install !== false) ensureSystemPackages(Object.keys(CLUSTER_PACKAGES), log);
  await sweepStaleClusters(log);
  const hostCount = options.hosts ?? DEFAULT_HOSTS;
  if (!Number.isInteger(hostCount) || hostCount < 1 || hostCount > MAX_HOSTS) throw new RangeError(`hosts must be 1 to ${MAX_HOSTS}, not ${hostCount}`);
  const { index, dir } = await claimIndex();
  const network = clusterNetwork(index);
  const state: ClusterState = { index, dir, ownerPid: process.pid, ownerStart: processStart(process.pid) ?? undefined, network, hosts: [], timings: {} };
  writeCluster(state);
  const timed = async <T>(part: string, work: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const result = await work();
    state.timings[part] = Date.now() - started;
    writeCluster(state);
    return result;
  };
  try {
    const registryAddress = options.registry === false ? [] : [`${hostOf(network, 1).address}:${REGISTRY_PORT}`];
    await timed('network', async () => {
      for (const batch of networkPlan(network, hostCount)) await runIpBatch(batch);
    });
    await timed('hosts', async () => {
      const specs = Array.from({ length: hostCount }, (_, i) => hostOf(network, i + 1));
      await Promise.all(specs.map(async (host) => {
        state.hosts.push(await startHost(host, join(dir, `h${host.index}`), registryAddress));
        writeCluster(state);
      }));
      state.hosts.sort((a, b) => a.index - b.index);
    });
    if (options.registry !== false) state.registry = await timed('registry', () => startRegistry(state.hosts[0]!, join(dir, 'registry')));
    if (options.swarm !== false) state.swarm = await timed('swarm', () => formSwarm(state.hosts, typeof options.swarm === 'object' ? options.swarm : {}));
    if (options.etcdMembers) state.etcd = await timed('etcd', () => startEtcdCluster(join(dir, 'etcd'), { members: options.etcdMembers }));
  } catch (err) {
    log(`cluster ${index} failed to start, tearing it down: ${(err as Error).message}`);
    await teardown(index, log);
    throw err;
  }
  log(`cluster ${index} up on ${network.subnet} in ${dir} (${Object.entries(state.timings).map(([k, v]) => `${k} ${v} ms`).join(', ')})`);
  return state;
}

/**
 * Stops everything of this cluster and deletes its namespaces, links,
 * cgroups and directory. A state whose index another harness holds now
 * (this one was swept and the subnet taken again) is left alone.
 */
export async function stopCluster(state: ClusterState, log: (line: string) => void = () => {}): Promise<void> {
  const current = readCluster(state.dir);
  const someoneElse = current ? current.ownerPid !== state.ownerPid || current.ownerStart !== state.ownerStart : existsSync(state.dir);
  if (someoneElse) {
    log(`cluster ${state.index} belongs to another harness now; leaving it`);
    return;
  }
  await teardown(state.index, log);
}

/**
 * Every process of cluster n: those in its namespaces (holders, dockerd,
 * containerd, shims, docker-proxy, the registry), those in its cgroups
 * (containers, which have namespaces of their own), and those whose argv
 * or working directory is under its directory (etcd members, the forwarder).
 */
function clusterPids(index: number): number[] {
  const network = clusterNetwork(index);
  const pids = new Set<number>();
  for (const ns of clusterNetns(index)) for (const pid of pidsInNetns(ns)) pids.add(pid);
  for (const cgroup of clusterCgroups(network)) for (const pid of cgroupPids(cgroup)) pids.add(pid);
  for (const pid of processesUnder(clusterDir(index))) pids.add(pid);
  pids.delete(process.pid);
  return [...pids];
}

/** Names under /run/netns that belong to cluster n. */
function clusterNetns(index: number): string[] {
  const prefix = `${clusterNetwork(index).prefix}-`;
  return (existsSync('/run/netns') ? readdirSync('/run/netns') : []).filter((name) => name.startsWith(prefix));
}

/**
 * How deep to look for the engines' cgroups. The cgroup parent is
 * relative, so Docker puts it under dockerd's own cgroup in each
 * hierarchy: at the top of most here, but under the memory cgroup the
 * machine gives each command it runs (/process_api/<id>/slipway-c0-h1),
 * and a sweep may run from another command than the one that started the
 * cluster. Absolute would escape that memory cgroup.
 */
const CGROUP_SEARCH_DEPTH = 4;

/** Cgroup directories, in every hierarchy, whose name matches; not looking inside a match. */
function findCgroups(matches: (name: string) => boolean): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: Dirent[] = [];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      if (matches(entry.name)) found.push(join(dir, entry.name));
      else if (depth < CGROUP_SEARCH_DEPTH) walk(join(dir, entry.name), depth + 1);
    }
  };
  for (const mountPoint of cgroupMountPoints()) walk(mountPoint, 1);
  return found;
}

/** The cgroup directories of cluster n's engines, in every hierarchy of the machine. */
function clusterCgroups(network: ClusterNetwork): string[] {
  const pattern = new RegExp(`^${network.prefix}-h\\d+$`);
  return findCgroups((name) => pattern.test(name));
}

function cgroupMountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => / - cgroup2? /.test(line))
    .map((line) => line.split(' ')[4]!)
    .filter(Boolean);
}

/** Pids in a cgroup and all its descendants. */
function cgroupPids(dir: string): number[] {
  const pids: number[] = [];
  const walk = (d: string) => {
    try {
      pids.push(...readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number));
      for (const entry of readdirSync(d, { withFileTypes: true })) if (entry.isDirectory()) walk(join(d, entry.name));
    } catch {
      // Removed while we walked it.
    }
  };
  walk(dir);
  return pids;
}

/** Removes a cgroup directory, children first (a cgroup is removed with rmdir, once empty). */
function removeCgroup(dir: string): void {
  try {
    for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeCgroup(join(dir, entry.name));
    rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Tears cluster n down from its name alone. Every process is SIGKILLed:
 * the engines' data is thrown away, and their mounts, iptables rules and
 * container sandboxes live in the hosts' own namespaces, which go with
 * them. Then the cgroups, the root link, the namespaces and the directory.
 */
async function teardown(index: number, log: (line: string) => void): Promise<void> {
  const network = clusterNetwork(index);
  // Several rounds: a dying dockerd or shim may have started one more process in the meantime.
  for (let round = 0; round < 20; round++) {
    const pids = clusterPids(index).filter(isAlive);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await sleep(100);
  }
  const survivors = clusterPids(index).filter(isAlive);
  if (survivors.length) log(`cluster ${index}: processes still alive after SIGKILL: ${survivors.join(' ')}`);
  for (const cgroup of clusterCgroups(network)) {
    try {
      removeCgroup(cgroup);
    } catch (err) {
      log(`cluster ${index}: could not remove cgroup ${cgroup}: ${(err as Error).message}`);
    }
  }
  // The root leg first: deleting it takes its peer with it at once, where a deleted namespace's links go later.
  await runCommand(['ip', 'link', 'del', network.rootLink]).catch(() => {});
  for (const ns of clusterNetns(index)) {
    await runCommand(['ip', 'netns', 'del', ns]).catch((err: Error) => log(`cluster ${index}: ip netns del ${ns}: ${err.message}`));
  }
  const dir = clusterDir(index);
  if (existsSync(dir)) rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  log(`cluster ${index} torn down`);
}

/** Indexes with anything left in the system: a directory, a namespace, the root link or a cgroup. */
function indexesWithRemains(): Set<number> {
  const found = new Set<number>();
  for (const name of readdirSync(tmpdir())) {
    const m = new RegExp(`^${DIR_PREFIX}(\\d+)$`).exec(name);
    if (m) found.add(Number(m[1]));
  }
  for (const name of existsSync('/run/netns') ? readdirSync('/run/netns') : []) {
    const m = /^slipway-c(\d+)-/.exec(name);
    if (m) found.add(Number(m[1]));
  }
  for (const name of readdirSync('/sys/class/net')) {
    const m = /^slipway-c(\d+)$/.exec(name);
    if (m) found.add(Number(m[1]));
  }
  for (const cgroup of findCgroups((name) => /^slipway-c\d+-h\d+$/.test(name))) {
    found.add(Number(/slipway-c(\d+)-h\d+$/.exec(cgroup)![1]));
  }
  return new Set([...found].filter((i) => i >= 0 && i < 255));
}

/**
 * Tears down every cluster whose owner is gone (a test killed with
 * SIGKILL, a crashed run), and the remains of any without a directory.
 * A live owner's cluster, or one whose directory was created a moment
 * ago and has no state file yet, is left alone.
 */
export async function sweepStaleClusters(log: (line: string) => void = () => {}): Promise<number[]> {
  const swept: number[] = [];
  for (const index of indexesWithRemains()) {
    const dir = clusterDir(index);
    const state = readCluster(dir);
    if (state && ownerAlive(state)) continue;
    if (!state && existsSync(dir)) {
      const age = Date.now() - (statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? 0);
      if (age < STARTING_GRACE_MS) continue;
    }
    log(state ? `sweeping cluster ${index} (owner ${state.ownerPid} is gone)` : `sweeping the remains of cluster ${index}`);
    await teardown(index, log);
    swept.push(index);
  }
  return swept;
}

/**
 * What of cluster n is still in the system: processes, namespaces, the
 * root link, cgroups, mounts, the directory. Empty when it is all gone;
 * what the tests check after a stop and after a sweep.
 */
export async function clusterRemains(index: number): Promise<string[]> {
  const network = clusterNetwork(index);
  const remains: string[] = [];
  for (const pid of clusterPids(index).filter(isAlive)) remains.push(`process ${pid}: ${(commandLine(pid) ?? []).join(' ')}`);
  const { stdout: netns } = await runCommand(['ip', 'netns', 'list']);
  for (const line of netns.split('\n')) if (line.startsWith(`${network.prefix}-`)) remains.push(`netns ${line.split(' ')[0]}`);
  const { stdout: links } = await runCommand(['ip', '-o', 'link', 'show']);
  for (const line of links.split('\n')) if (line.split(': ')[1]?.split('@')[0] === network.rootLink) remains.push(`link ${network.rootLink}`);
  for (const cgroup of clusterCgroups(network)) remains.push(`cgroup ${cgroup}`);
  const dir = clusterDir(index);
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mountPoint = line.split(' ')[4];
    if (mountPoint && (mountPoint.startsWith(`${dir}/`) || mountPoint.startsWith(`/run/netns/${network.prefix}-`))) remains.push(`mount ${mountPoint}`);
  }
  if (existsSync(dir)) remains.push(`directory ${dir}`);
  return remains;
}
