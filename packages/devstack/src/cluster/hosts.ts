import { mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { runCommand } from '@slipway/core/run-command';
import { commandLine, isAlive, spawnService, stopProcess, waitFor } from '../processes.js';
import { dockerAnswers } from '../services.js';

/**
 * Simulated hosts: each a network namespace with its own hostname, mount
 * namespace and dockerd, plugged into a bridge that lives in a "switch"
 * namespace. The root namespace (Slipway, nginx, the tests) has one leg on
 * that bridge, so it reaches every host's address, and nothing else: no
 * route is added anywhere, and the hosts have no default route.
 *
 *   root namespace     slipway-c<n> 10.77.<n>.1
 *                          │ veth
 *   slipway-c<n>-sw    uplink ── br0 ── h1  h2  h3
 *                                        │   │   │  veths
 *   slipway-c<n>-h<i>  eth0 10.77.<n>.<10+i>, dockerd on :2375 and a unix socket
 */

/** The first two octets of every cluster subnet: 10.77.<n>.0/24 for cluster n. */
export const SUBNET_BASE = '10.77';
/** Host i answers at 10.77.<n>.<HOST_OFFSET + i>: host 1 is .11, as in issue 18's example. */
export const HOST_OFFSET = 10;
/** Each engine's API on its host's address: plain HTTP, reachable only on the cluster's own bridge. */
export const ENGINE_PORT = 2375;
/** What a host's engine gets to stop its containers before it is killed. */
export const ENGINE_STOP_GRACE_MS = 20_000;
/** A host's dockerd is up in ~1-4 s here; generous for a loaded machine. */
const ENGINE_START_TIMEOUT_MS = 60_000;
const CLUSTER_COUNT = 255;

/** The names and addresses of cluster n's network; all derived from n, so a sweep needs nothing else. */
export interface ClusterNetwork {
  index: number;
  subnet: string;
  /** The root namespace's address on the bridge. */
  gateway: string;
  switchNs: string;
  /** The veth leg in the root namespace. */
  rootLink: string;
  /** Every namespace and cgroup of this cluster starts with it. */
  prefix: string;
}

export function clusterNetwork(index: number): ClusterNetwork {
  if (!Number.isInteger(index) || index < 0 || index >= CLUSTER_COUNT) throw new RangeError(`cluster index ${index} is not in 0..${CLUSTER_COUNT - 1}`);
  const prefix = `slipway-c${index}`;
  return {
    index,
    subnet: `${SUBNET_BASE}.${index}.0/24`,
    gateway: `${SUBNET_BASE}.${index}.1`,
    switchNs: `${prefix}-sw`,
    rootLink: prefix,
    prefix,
  };
}

/** One simulated host: where it is and how to reach its engine. */
export interface SimulatedHost {
  /** 1-based. */
  index: number;
  /** Its network namespace, its hostname (so `docker node ls` tells the hosts apart) and its cgroup parent. */
  name: string;
  address: string;
  cgroupParent: string;
}

export function hostOf(network: ClusterNetwork, index: number): SimulatedHost {
  if (!Number.isInteger(index) || index < 1 || HOST_OFFSET + index > 254) throw new RangeError(`host index ${index} is out of range`);
  const name = `${network.prefix}-h${index}`;
  return { index, name, address: `${SUBNET_BASE}.${network.index}.${HOST_OFFSET + index}`, cgroupParent: name };
}

/** A host as the harness runs it: the plan above plus its processes and files. */
export interface HostState extends SimulatedHost {
  dir: string;
  /** `unix://…/docker.sock`: reachable from the root namespace through the file system. */
  socket: string;
  /** `tcp://<address>:2375`, what `engine.manager` would name for a remote manager. */
  engineUrl: string;
  /** Holds the host's mount and UTS namespaces while its engine is stopped. */
  holderPid: number;
  /** dockerd, while it runs. */
  enginePid?: number;
}

/**
 * One `ip -batch` run: `commands` are ip's arguments, one command each,
 * run in `namespace` (the root namespace when absent). Batched because
 * every `ip` process costs ~0.1 s on a loaded two-core machine and a
 * cluster takes some thirty commands.
 */
export interface IpBatch {
  namespace?: string;
  commands: string[][];
}

/** What builds cluster `network` with `hostCount` hosts, in order; pure. */
export function networkPlan(network: ClusterNetwork, hostCount: number): IpBatch[] {
  const sw = network.switchNs;
  const hosts = Array.from({ length: hostCount }, (_, i) => hostOf(network, i + 1));
  const root: string[][] = [
    ['netns', 'add', sw],
    ...hosts.map((host) => ['netns', 'add', host.name]),
    // Created with its peer born in the switch: no other name ever appears in the root namespace.
    ['link', 'add', network.rootLink, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', sw],
    ['addr', 'add', `${network.gateway}/24`, 'dev', network.rootLink],
    ['link', 'set', network.rootLink, 'up'],
  ];
  const switchCommands: string[][] = [
    ['link', 'set', 'lo', 'up'],
    ['link', 'add', 'br0', 'type', 'bridge'],
    ['link', 'set', 'br0', 'up'],
    ['link', 'set', 'uplink', 'master', 'br0'],
    ['link', 'set', 'uplink', 'up'],
    ...hosts.flatMap((host) => [
      ['link', 'add', `h${host.index}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.name],
      ['link', 'set', `h${host.index}`, 'master', 'br0'],
      ['link', 'set', `h${host.index}`, 'up'],
    ]),
  ];
  return [
    { commands: root },
    { namespace: sw, commands: switchCommands },
    ...hosts.map((host) => ({
      namespace: host.name,
      commands: [
        ['link', 'set', 'lo', 'up'],
        ['addr', 'add', `${host.address}/24`, 'dev', 'eth0'],
        ['link', 'set', 'eth0', 'up'],
      ],
    })),
  ];
}

/** Runs one batch. Its words are names and addresses made here, never input, and hold no space. */
export async function runIpBatch(batch: IpBatch): Promise<void> {
  const argv = batch.namespace ? ['ip', '-n', batch.namespace, '-batch', '-'] : ['ip', '-batch', '-'];
  await runCommand(argv, { input: batch.commands.map((words) => words.join(' ')).join('\n') + '\n' });
}

/** Whether two IPv4 CIDR blocks share any address. */
export function subnetsOverlap(a: string, b: string): boolean {
  const parse = (cidr: string) => {
    const [address, length = '32'] = cidr.split('/');
    const value = address!.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
    return { value, length: Number(length) };
  };
  const x = parse(a);
  const y = parse(b);
  const shorter = Math.min(x.length, y.length);
  const block = 2 ** (32 - shorter);
  return Math.floor(x.value / block) === Math.floor(y.value / block);
}

/**
 * The mounts of a host's mount namespace, as an fstab for one `mount -a`.
 * `ip netns exec` mounts a fresh sysfs over /sys, which hides
 * /sys/fs/cgroup, and dockerd then fails with "Devices cgroup isn't
 * mounted": the machine's cgroup hierarchies are mounted again inside,
 * which shows the very same cgroups (a cgroup v1 hierarchy is one per set
 * of controllers). Then a private /run: dockerd, containerd and the shims
 * keep sockets and state there (/var/run is a link to it). Pure: reads the
 * root namespace's /proc/self/mountinfo text.
 */
export function hostFstab(mountinfo: string): string {
  const lines: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const [mountFields, fsFields] = line.split(' - ');
    if (!mountFields || !fsFields) continue;
    const mountPoint = mountFields.split(' ')[4];
    const [type, source, options] = fsFields.split(' ');
    if (!mountPoint || !type || !source || !options) continue;
    if (mountPoint !== '/sys/fs/cgroup' && !mountPoint.startsWith('/sys/fs/cgroup/')) continue;
    if (!['tmpfs', 'cgroup', 'cgroup2'].includes(type)) continue;
    // The top is sysfs's own directory; the rest are made on the tmpfs as they are mounted.
    const mkdir = mountPoint === '/sys/fs/cgroup' ? '' : ',X-mount.mkdir';
    lines.push(`${source} ${mountPoint} ${type} ${options}${mkdir} 0 0`);
  }
  lines.push('tmpfs /run tmpfs rw,mode=755 0 0', '');
  return lines.join('\n');
}

/**
 * daemon.json of a host's engine. Docker 20.10 takes the key path only
 * here, not as a flag; without it every engine would share
 * /etc/docker/key.json.
 */
export function daemonConfig(dir: string, insecureRegistries: readonly string[]): Record<string, unknown> {
  return { 'deprecated-key-path': join(dir, 'key.json'), 'insecure-registries': [...insecureRegistries] };
}

/** The argv of a host's dockerd, everything of its own under `dir`. */
export function dockerdArgv(host: SimulatedHost, dir: string): string[] {
  return [
    'dockerd',
    '--config-file', join(dir, 'daemon.json'),
    '--data-root', join(dir, 'data'),
    '--exec-root', join(dir, 'exec'),
    '--pidfile', join(dir, 'docker.pid'),
    '--cgroup-parent', host.cgroupParent,
    '--host', `unix://${join(dir, 'docker.sock')}`,
    '--host', `tcp://${host.address}:${ENGINE_PORT}`,
    // A tcp listener without TLS makes dockerd wait ~15 s before it serves, unless told this.
    '--tls=false',
  ];
}

/** Runs an argv inside the host's namespaces (those its holder process is in). */
function inHost(holderPid: number, namespaces: string[], argv: string[]): string[] {
  return ['nsenter', '-t', String(holderPid), ...namespaces, '--', ...argv];
}

/**
 * Starts a host. First the holder of its namespaces: `ip netns exec` gives
 * it a mount namespace of its own with the host's sysfs, `unshare --uts` a
 * hostname of its own. Then cgroups and a private /run are mounted inside
 * (see `hostFstab`), the hostname is set, and the engine is started.
 * Everything mounted lives in that mount namespace only, so it goes when
 * its last process does.
 */
export async function startHost(host: SimulatedHost, dir: string, insecureRegistries: readonly string[]): Promise<HostState> {
  mkdirSync(dir, { recursive: true });
  const holderPid = spawnService(['ip', 'netns', 'exec', host.name, 'unshare', '--uts', '--', 'sleep', 'infinity'], join(dir, 'holder.log'));
  const state: HostState = { ...host, dir, socket: `unix://${join(dir, 'docker.sock')}`, engineUrl: `tcp://${host.address}:${ENGINE_PORT}`, holderPid };
  // `ip netns exec` and `unshare` each exec the next: once it is `sleep`, the namespaces are in place.
  await waitFor(`the namespaces of ${host.name}`, () => {
    if (!isAlive(holderPid)) throw new Error(`the holder of ${host.name} exited; see ${join(dir, 'holder.log')}`);
    return commandLine(holderPid)?.[0] === 'sleep' && netnsOf(holderPid) === netnsInode(host.name);
  }, { timeoutMs: 10_000, intervalMs: 20 });
  const fstab = join(dir, 'fstab');
  writeFileSync(fstab, hostFstab(readFileSync('/proc/self/mountinfo', 'utf8')));
  await runCommand(inHost(holderPid, ['-m'], ['mount', '--fstab', fstab, '-a']));
  await runCommand(inHost(holderPid, ['-u'], ['hostname', host.name]));
  writeFileSync(join(dir, 'daemon.json'), JSON.stringify(daemonConfig(dir, insecureRegistries), null, 2) + '\n');
  return startHostEngine(state);
}

/** Starts (or starts again) the host's dockerd and waits until it answers. */
export async function startHostEngine(host: HostState): Promise<HostState> {
  const socketPath = host.socket.slice('unix://'.length);
  const enginePid = spawnService(inHost(host.holderPid, ['-m', '-n', '-u'], dockerdArgv(host, host.dir)), join(host.dir, 'dockerd.log'));
  host.enginePid = enginePid;
  await waitFor(`${host.name}'s engine to answer on ${socketPath}`, async () => {
    if (!isAlive(enginePid)) throw new Error(`dockerd exited; see ${join(host.dir, 'dockerd.log')}`);
    return dockerAnswers(socketPath);
  }, { timeoutMs: ENGINE_START_TIMEOUT_MS, intervalMs: 50 });
  return host;
}

/**
 * Stops the host's dockerd as an operator would (SIGTERM: it stops its
 * containers, and with them the host's swarm tasks), SIGKILL after `graceMs`.
 */
export async function stopHostEngine(host: HostState, graceMs = ENGINE_STOP_GRACE_MS): Promise<void> {
  if (host.enginePid) await stopProcess(host.enginePid, graceMs);
  host.enginePid = undefined;
}

/**
 * Unplugs the host from the switch (or plugs it back): to everyone else it
 * is gone, though its engine and containers run on, as when a server loses
 * its network.
 */
export async function setHostConnected(network: ClusterNetwork, host: SimulatedHost, connected: boolean): Promise<void> {
  await runCommand(['ip', '-n', network.switchNs, 'link', 'set', `h${host.index}`, connected ? 'up' : 'down']);
}

/** dockerode on the host's engine, through its unix socket. */
export function hostDocker(host: HostState): Docker {
  return new Docker({ socketPath: host.socket.slice('unix://'.length) });
}

/** `net:[<inode>]` of a named network namespace, as /proc/<pid>/ns/net reads; null when there is none. */
export function netnsInode(name: string): string | null {
  const stat = statSync(`/run/netns/${name}`, { throwIfNoEntry: false });
  return stat ? `net:[${stat.ino}]` : null;
}

/** The network namespace a process is in, or null when it is gone. */
export function netnsOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}

/**
 * Every process in the named network namespace: the host's holder, dockerd,
 * containerd, the shims, docker-proxy, containers on the host network.
 * Found by namespace, not by pid, so a sweep after a killed run finds them
 * without any record.
 */
export function pidsInNetns(name: string): number[] {
  const inode = netnsInode(name);
  if (!inode) return [];
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) => pid !== process.pid && netnsOf(pid) === inode);
}
