import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { AppConfig, EngineConfig } from '@slipway/config/types';
import { LABELS } from '@slipway/core/docker';
import { createEtcdClient } from '@slipway/etcd/client';
import { startCluster, stopCluster, type ClusterState, hostDocker } from '@slipway/devstack/cluster';
import type { ownNginx } from '@slipway/devstack/testing';
import type { RolloutOptions } from '../../src/rollout.js';
import { docker, useRolloutWorld } from '../fixtures.js';

/** What a swarm test file shares: three simulated hosts with a registry and a swarm, an nginx of its own, the stack's etcd. */
export interface SwarmWorld {
  cluster: ClusterState;
  manager: Docker;
  engine: EngineConfig;
  nginx: Awaited<ReturnType<typeof ownNginx>>;
  etcd: Etcd3;
  /** The options every rollout of `app` on this swarm takes, with its log printed under the test's output. */
  base(app: AppConfig, lines?: string[]): Pick<RolloutOptions, 'app' | 'nginx' | 'docker' | 'etcd' | 'engine' | 'manager' | 'log'>;
}

export const clusterLog = (line: string) => console.log(`[swarm] ${line}`);

/**
 * Registers the beforeAll/afterAll that start and stop the cluster (cleaned
 * up completely, also when a test failed). With `etcdMembers` the cluster
 * runs an etcd of that many members and `etcd` is a client of all of them.
 */
export function useSwarmWorld(assign: (world: SwarmWorld) => void, options: { etcdMembers?: number } = {}): void {
  let nginx: SwarmWorld['nginx'];
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd } = w));
  let cluster: ClusterState | undefined;
  let own: Etcd3 | undefined;
  beforeAll(async () => {
    cluster = await startCluster({ log: clusterLog, etcdMembers: options.etcdMembers });
    if (cluster.etcd) etcd = own = createEtcdClient(cluster.etcd.endpoints);
    const manager = hostDocker(cluster.hosts[0]!);
    const engine: EngineConfig = { type: 'swarm', manager: cluster.hosts[0]!.engineUrl, registry: cluster.registry!.address };
    assign({
      cluster, manager, engine, nginx, etcd,
      base: (app, lines) => ({
        app, nginx: nginx.settings, docker, etcd, engine, manager,
        log: (line) => {
          lines?.push(line);
          clusterLog(`${app.name}: ${line}`);
        },
      }),
    });
  }, 240_000);
  afterAll(async () => {
    own?.close();
    if (cluster) await stopCluster(cluster, clusterLog);
  }, 120_000);
}

/** The app's services on the swarm, by label. */
export async function appServices(manager: Docker, app: string): Promise<Array<{ id: string; name: string; release: string }>> {
  const services = await manager.listServices({ filters: { label: [`${LABELS.app}=${app}`] } });
  return services.map((s) => ({ id: s.ID!, name: s.Spec!.Name!, release: s.Spec!.Labels?.[LABELS.release] ?? '' }));
}

export const randomSha = () => randomBytes(20).toString('hex');
