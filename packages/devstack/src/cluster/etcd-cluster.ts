import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, isAlive, spawnService, stopProcess, waitFor } from '../processes.js';
import { etcdHealthy } from '../services.js';

/**
 * A multi-member etcd on loopback: each member its own process, ports and
 * data directory, so a test can stop one (or the leader) and start it again
 * with its data, as an operator restarting a server would.
 */

/** Members a cluster gets unless told otherwise: the smallest that survives losing one. */
export const DEFAULT_MEMBERS = 3;
/** A member joins and a leader is elected in ~1-2 s; generous for a loaded machine. */
const START_TIMEOUT_MS = 60_000;

export interface EtcdMemberPlan {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
}

export interface EtcdMember extends EtcdMemberPlan {
  clientUrl: string;
  /** While it runs. */
  pid?: number;
  log: string;
}

export interface EtcdClusterState {
  dir: string;
  /** Keeps this cluster's members from ever talking to another cluster's that reused a port. */
  token: string;
  members: EtcdMember[];
  /** Every member's client URL: what `etcd:` in slipway.yml lists. */
  endpoints: string[];
}

const peerUrl = (member: EtcdMemberPlan) => `http://127.0.0.1:${member.peerPort}`;
const clientUrl = (member: EtcdMemberPlan) => `http://127.0.0.1:${member.clientPort}`;

/** A member's argv; pure, so a restart uses the very same one (etcd ignores the initial-cluster flags once it has data). */
export function etcdMemberArgv(member: EtcdMemberPlan, members: readonly EtcdMemberPlan[], token = 'slipway-devstack'): string[] {
  return [
    'etcd', '--name', member.name, '--data-dir', member.dataDir,
    '--listen-client-urls', clientUrl(member), '--advertise-client-urls', clientUrl(member),
    '--listen-peer-urls', peerUrl(member), '--initial-advertise-peer-urls', peerUrl(member),
    '--initial-cluster', members.map((m) => `${m.name}=${peerUrl(m)}`).join(','),
    '--initial-cluster-state', 'new', '--initial-cluster-token', token,
    '--log-level', 'warn', '--logger', 'zap',
  ];
}

function startMember(cluster: EtcdClusterState, member: EtcdMember): void {
  const env = { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? '' : process.arch };
  member.pid = spawnService(etcdMemberArgv(member, cluster.members, cluster.token), member.log, env);
}

async function waitHealthy(member: EtcdMember): Promise<void> {
  // /health answers 200 only once the member sees a leader: the cluster has quorum.
  await waitFor(`etcd member ${member.name} at ${member.clientUrl}`, () => {
    if (!isAlive(member.pid)) throw new Error(`it exited; see ${member.log}`);
    return etcdHealthy(member.clientUrl);
  }, { timeoutMs: START_TIMEOUT_MS, intervalMs: 100 });
}

/** Starts `members` etcd members under `dir` (all at once: none is healthy before a quorum runs). */
export async function startEtcdCluster(dir: string, options: { members?: number } = {}): Promise<EtcdClusterState> {
  const count = options.members ?? DEFAULT_MEMBERS;
  const members: EtcdMember[] = [];
  const taken = new Set<number>();
  const port = async () => {
    let p = await freePort();
    while (taken.has(p)) p = await freePort();
    taken.add(p);
    return p;
  };
  for (let i = 1; i <= count; i++) {
    const name = `m${i}`;
    const memberDir = join(dir, name);
    mkdirSync(memberDir, { recursive: true });
    const plan = { name, clientPort: await port(), peerPort: await port(), dataDir: join(memberDir, 'data') };
    members.push({ ...plan, clientUrl: clientUrl(plan), log: join(memberDir, 'etcd.log') });
  }
  const cluster: EtcdClusterState = { dir, token: `slipway-${randomBytes(4).toString('hex')}`, members, endpoints: members.map((m) => m.clientUrl) };
  for (const member of members) startMember(cluster, member);
  try {
    await Promise.all(members.map(waitHealthy));
  } catch (err) {
    await stopEtcdCluster(cluster);
    throw err;
  }
  return cluster;
}

function memberNamed(cluster: EtcdClusterState, name: string): EtcdMember {
  const member = cluster.members.find((m) => m.name === name);
  if (!member) throw new Error(`no etcd member ${name} (members: ${cluster.members.map((m) => m.name).join(', ')})`);
  return member;
}

/** Stops one member (SIGTERM: it leaves as a stopped server would, its data kept). */
export async function stopEtcdMember(cluster: EtcdClusterState, name: string): Promise<void> {
  const member = memberNamed(cluster, name);
  if (member.pid) await stopProcess(member.pid);
  member.pid = undefined;
}

/** Starts a stopped member again on its data; resolves once it is healthy. */
export async function startEtcdMember(cluster: EtcdClusterState, name: string): Promise<void> {
  const member = memberNamed(cluster, name);
  if (member.pid && isAlive(member.pid)) return;
  startMember(cluster, member);
  await waitHealthy(member);
}

interface MemberStatus {
  header: { member_id: string };
  leader: string;
}

async function memberStatus(member: EtcdMember): Promise<MemberStatus | null> {
  if (!member.pid || !isAlive(member.pid)) return null;
  try {
    const res = await fetch(`${member.clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2000) });
    return res.ok ? ((await res.json()) as MemberStatus) : null;
  } catch {
    return null;
  }
}

/**
 * The member that leads now, as the running members see it (etcd's
 * maintenance status over its HTTP gateway); null while there is none.
 */
export async function etcdLeader(cluster: EtcdClusterState): Promise<EtcdMember | null> {
  const statuses = await Promise.all(cluster.members.map(async (member) => ({ member, status: await memberStatus(member) })));
  const leaderId = statuses.find((s) => s.status && s.status.leader !== '0')?.status?.leader;
  return statuses.find((s) => s.status?.header.member_id === leaderId)?.member ?? null;
}

/** Waits until some running member leads, and returns it. */
export function waitForEtcdLeader(cluster: EtcdClusterState, timeoutMs = 30_000): Promise<EtcdMember> {
  return waitFor('an etcd leader', () => etcdLeader(cluster), { timeoutMs, intervalMs: 100 });
}

export async function stopEtcdCluster(cluster: EtcdClusterState): Promise<void> {
  await Promise.all(cluster.members.map((member) => (member.pid ? stopProcess(member.pid) : undefined)));
  for (const member of cluster.members) member.pid = undefined;
}
