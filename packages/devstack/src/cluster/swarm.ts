import type Docker from 'dockerode';
import { waitFor } from '../processes.js';
import { hostDocker, type HostState } from './hosts.js';

/**
 * Docker Swarm mode over the simulated hosts: `init` on host 1, the others
 * join. By default host 1 is the only manager and the others are workers:
 * Slipway is given one manager endpoint (`engine.manager`), one raft member
 * forms at once, and a worker can be stopped, drained or unplugged without
 * touching the control plane, which is what the tests of rescheduling need.
 * `managers: 3` makes every host a manager when a test wants to lose one.
 *
 * This kernel has no IPVS: the ingress routing mesh and VIPs do not work.
 * Services publish in host mode (see `serviceEndpoints`) and overlay
 * networks need `--endpoint-mode dnsrr`.
 */

/** The swarm port on each host's address (Docker's default). */
export const SWARM_PORT = 2377;
/**
 * How often workers report to the manager. Docker's default is 5 s; at 1 s
 * a stopped or unplugged host is marked down (and its tasks rescheduled)
 * within a few seconds, which keeps the tests that lose a host short.
 */
export const DEFAULT_HEARTBEAT_MS = 1000;

export interface SwarmOptions {
  /** How many hosts (from host 1) are managers. Default 1. */
  managers?: number;
  heartbeatMs?: number;
}

export interface SwarmState {
  /** The host whose engine was `init`: Slipway's `engine.manager`. */
  manager: number;
  /** Node id per host index (1-based; index 0 unused). */
  nodeIds: Record<number, string>;
}

/** `docker swarm init` on the first host, `join` on the rest; resolves once every node is ready. */
export async function formSwarm(hosts: readonly HostState[], options: SwarmOptions = {}): Promise<SwarmState> {
  const [first, ...rest] = hosts;
  if (!first) throw new Error('a swarm needs at least one host');
  const managers = options.managers ?? 1;
  const manager = hostDocker(first);
  await manager.swarmInit({
    ListenAddr: `${first.address}:${SWARM_PORT}`,
    AdvertiseAddr: `${first.address}:${SWARM_PORT}`,
    Spec: { Dispatcher: { HeartbeatPeriod: (options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS) * 1_000_000 } },
  });
  const { JoinTokens } = (await manager.swarmInspect()) as { JoinTokens: { Worker: string; Manager: string } };
  // One at a time: managers joining at once race for the raft configuration.
  for (const host of rest) {
    await hostDocker(host).swarmJoin({
      ListenAddr: `${host.address}:${SWARM_PORT}`,
      AdvertiseAddr: `${host.address}:${SWARM_PORT}`,
      RemoteAddrs: [`${first.address}:${SWARM_PORT}`],
      JoinToken: host.index <= managers ? JoinTokens.Manager : JoinTokens.Worker,
    });
  }
  const nodeIds: Record<number, string> = {};
  await waitFor('every swarm node to be ready', async () => {
    const nodes = await manager.listNodes();
    for (const host of hosts) {
      const node = nodes.find((n) => n.Status?.Addr === host.address);
      if (node?.Status?.State !== 'ready') return false;
      nodeIds[host.index] = node.ID!;
    }
    return true;
  }, { timeoutMs: 60_000, intervalMs: 200 });
  return { manager: first.index, nodeIds };
}

/** Sets a node's labels (merged into what it has), e.g. `{role: 'web'}` for a `node.labels.role==web` placement. */
export async function setNodeLabels(manager: Docker, nodeId: string, labels: Record<string, string>): Promise<void> {
  const node = manager.getNode(nodeId);
  // The update is compare-and-set on the node's version; another writer in between makes it fail, so retry.
  for (let attempt = 0; ; attempt++) {
    const info = (await node.inspect()) as { Version: { Index: number }; Spec: { Labels?: Record<string, string> } & Record<string, unknown> };
    try {
      await node.update({ _query: { version: info.Version.Index }, _body: { ...info.Spec, Labels: { ...info.Spec.Labels, ...labels } } });
      return;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

/** Sets a node's availability: `drain` moves its tasks elsewhere, `active` takes tasks again. */
export async function setNodeAvailability(manager: Docker, nodeId: string, availability: 'active' | 'pause' | 'drain'): Promise<void> {
  const node = manager.getNode(nodeId);
  const info = (await node.inspect()) as { Version: { Index: number }; Spec: Record<string, unknown> };
  await node.update({ _query: { version: info.Version.Index }, _body: { ...info.Spec, Availability: availability } });
}

/** A running task of a service and where it answers. */
export interface TaskEndpoint {
  taskId: string;
  nodeId: string;
  /** The node's address as the swarm knows it (`Status.Addr`). */
  address: string;
  /** The host port Swarm chose for the task (host mode). */
  port: number;
}

/**
 * The running tasks of a service that have a published port, each with
 * its node's address and that port: what an upstream set is made of.
 * Asked of a manager; a task still starting has no port yet and is left
 * out. Only ports published in host mode appear here: this is the only
 * mode that works without IPVS.
 */
export async function serviceEndpoints(manager: Docker, service: string, targetPort?: number): Promise<TaskEndpoint[]> {
  const [tasks, nodes] = await Promise.all([
    manager.listTasks({ filters: { service: [service], 'desired-state': ['running'] } }),
    manager.listNodes(),
  ]);
  const addressOf = new Map(nodes.map((n) => [n.ID!, n.Status?.Addr ?? '']));
  const endpoints: TaskEndpoint[] = [];
  for (const task of tasks as Array<{ ID: string; NodeID?: string; Status?: { State?: string; PortStatus?: { Ports?: Array<{ TargetPort?: number; PublishedPort?: number; PublishMode?: string }> } } }>) {
    if (task.Status?.State !== 'running' || !task.NodeID) continue;
    // The same binding is listed once per address family: take the first.
    const binding = task.Status.PortStatus?.Ports?.find((p) => p.PublishMode === 'host' && p.PublishedPort && (targetPort === undefined || p.TargetPort === targetPort));
    const address = addressOf.get(task.NodeID);
    if (!binding?.PublishedPort || !address) continue;
    endpoints.push({ taskId: task.ID, nodeId: task.NodeID, address, port: binding.PublishedPort });
  }
  return endpoints;
}
