import { request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import { expect } from 'vitest';
import { createLogger } from '@slipway/core/logger';
import { loadConfig } from '@slipway/config/load-config';
import type { SlipwayConfig } from '@slipway/config/types';
import { createFixtureRepo, type FixtureRepo, freePort, isolatedNginx, tempDir, testAppName, testStack, uniqueName, writeTestConfig } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { waitForJob as waitForJobIn } from '@slipway/queue/follow-job';
import type { JobRecord } from '@slipway/queue/job-types';
import { connectRedis, type Redis } from '@slipway/queue/redis';
import { createEtcdClient } from '@slipway/etcd/client';
import { createDashboard, type Dashboard } from '../src/create-dashboard.js';

export const quietLogger = createLogger({ name: 'test', level: 'silent' });

export interface AppFixture {
  name: string;
  repo: FixtureRepo & { sha: string };
  /** nginx address serving this app. */
  url: string;
}

export interface DashboardWorld {
  dir: string;
  config: SlipwayConfig;
  configFile: string;
  token: string;
  queue: DeployQueue;
  redis: Redis;
  etcd: Etcd3;
  docker: Docker;
  dashboard: Dashboard;
  server: Server;
  /** `http://127.0.0.1:<port>` of the dashboard. */
  url: string;
  apps: AppFixture[];
  /** Sockets of open log streams, to cut them mid-stream. */
  streamSockets(): Socket[];
  close(): Promise<void>;
}

/**
 * A dashboard on a free port over the real stack: its own queue prefix,
 * nginx and sample apps (each a fixture repository), and the connections
 * it needs. Jobs can be seeded through `queue.store` or run for real by
 * an in-process worker on the same config.
 */
export async function dashboardWorld(options: { apps?: number; app?: Record<string, unknown> } = {}): Promise<DashboardWorld> {
  const tmp = tempDir('slipway-dashboard-');
  const stack = testStack();
  const nginx = await isolatedNginx(tmp.path);
  const apps: AppFixture[] = [];
  const raw: Record<string, Record<string, unknown>> = {};
  for (let i = 0; i < (options.apps ?? 1); i++) {
    const name = testAppName();
    const repo = await createFixtureRepo(tmp.path, { version: `${name} v1`, name });
    const port = await freePort();
    raw[name] = {
      repo: repo.url, replicas: 2, listen: `127.0.0.1:${port}`, drain_s: 1, stop_timeout_s: 2,
      health: { path: '/healthz', timeout_s: 20, interval_ms: 100 },
      ...options.app,
    };
    apps.push({ name, repo, url: `http://127.0.0.1:${port}` });
  }
  const token = uniqueName('dashboard-token').padEnd(40, 'x');
  const configFile = writeTestConfig(join(tmp.path, 'slipway.yml'), {
    stack, nginx, prefix: uniqueName('d'), workdir: join(tmp.path, 'work'), apps: raw,
    extra: { dashboard: { host: '127.0.0.1', port: 3001, token } },
  });
  const config = loadConfig({ path: configFile, env: {} });
  const redis = connectRedis(config.redis, 'producer');
  await new Promise((resolve) => redis.once('ready', resolve));
  const queue = new DeployQueue({ redis, prefix: config.queue.prefix, attempts: config.worker.attempts, backoffMs: config.worker.backoff_ms });
  const etcd = createEtcdClient(config.etcd);
  const docker = new Docker();
  const dashboard = createDashboard({ config, queue, redis, etcd, docker, logger: quietLogger });
  const server = dashboard.serve(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const sockets = new Set<Socket>();
  server.on('request', (req, res) => {
    if (!req.url?.includes('/log/stream')) return;
    sockets.add(req.socket);
    res.once('close', () => sockets.delete(req.socket));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    dir: tmp.path, config, configFile, token, queue, redis, etcd, docker, dashboard, server, url, apps,
    streamSockets: () => [...sockets],
    async close() {
      dashboard.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      for (const app of apps) await etcd.delete().prefix(`/slipway/apps/${app.name}/`).catch(() => {});
      const keys = await redis.keys(`${config.queue.prefix}:*`).catch(() => [] as string[]);
      if (keys.length) await redis.del(...keys).catch(() => {});
      await queue.close();
      redis.disconnect();
      etcd.close();
      await nginx.stop();
      tmp.remove();
    },
  };
}

/** Polls a job until it reaches a final state. */
export const waitForJob = (queue: DeployQueue, id: string, timeoutMs = 120_000): Promise<JobRecord> => waitForJobIn(queue.store, id, { timeoutMs });

/** A commit-like 40-hex string for seeded jobs. */
export function fakeSha(seed: number): string {
  return seed.toString(16).padStart(8, '0').repeat(5);
}

/**
 * Opens a job's log stream and leaves while the route's first Redis read
 * waits (behind a blocking read held on the dashboard's connection for a
 * second); resolves a second after the client is gone.
 */
export async function leaveLogStreamDuringFirstRead(world: DashboardWorld, id: string, headers: Record<string, string>): Promise<void> {
  const held = world.redis.blpop(`${world.config.queue.prefix}:test:nothing`, 1);
  const client = request(`${world.url}/api/jobs/${id}/log/stream`, { headers });
  client.on('error', () => {});
  const onRequest = (req: IncomingMessage) => {
    if (req.url?.endsWith(`/jobs/${id}/log/stream`)) setImmediate(() => client.destroy());
  };
  world.server.on('request', onRequest);
  client.end();
  try {
    await held;
    await expect.poll(() => client.destroyed).toBe(true);
    await sleep(1000);
  } finally {
    world.server.off('request', onRequest);
  }
}
