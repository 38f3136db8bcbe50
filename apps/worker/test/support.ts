import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '@slipway/core/logger';
import { loadConfig } from '@slipway/config/load-config';
import type { SlipwayConfig } from '@slipway/config/types';
import { createFixtureRepo, type FixtureRepo, freePort, isolatedNginx, tempDir, testAppName, testStack, uniqueName, writeTestConfig } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { waitForJob as waitForJobIn } from '@slipway/queue/follow-job';
import { FINAL_STATES, type JobRecord } from '@slipway/queue/job-types';
import { connectRedis } from '@slipway/queue/redis';

/** A silent logger for in-process workers (tests assert on job logs, not process logs). */
export const quietLogger = createLogger({ name: 'test', level: 'silent' });

export interface AppFixture {
  name: string;
  repo: FixtureRepo & { sha: string };
  /** nginx address serving this app. */
  url: string;
}

export interface WorkerWorld {
  dir: string;
  config: SlipwayConfig;
  configFile: string;
  queue: DeployQueue;
  apps: AppFixture[];
  cleanup(): Promise<void>;
}

/**
 * A config with `count` sample apps (each its own repo and nginx listen
 * port), one nginx of the test's own, a unique queue prefix, and a producer
 * queue to enqueue with.
 */
export async function workerWorld(options: { apps?: number; app?: Record<string, unknown>; extra?: Record<string, unknown>; redisUrl?: string; buildDelay_s?: number } = {}): Promise<WorkerWorld> {
  const tmp = tempDir();
  const stack = testStack();
  const nginx = await isolatedNginx(tmp.path);
  const apps: AppFixture[] = [];
  const raw: Record<string, Record<string, unknown>> = {};
  for (let i = 0; i < (options.apps ?? 1); i++) {
    const name = testAppName();
    const repo = await createFixtureRepo(tmp.path, { version: `${name} v1`, name, buildDelay_s: options.buildDelay_s });
    const port = await freePort();
    raw[name] = {
      repo: repo.url, replicas: 2, listen: `127.0.0.1:${port}`, drain_s: 3, stop_timeout_s: 3,
      health: { path: '/healthz', timeout_s: 20, interval_ms: 100 },
      ...options.app,
    };
    apps.push({ name, repo, url: `http://127.0.0.1:${port}` });
  }
  const configFile = writeTestConfig(join(tmp.path, 'slipway.yml'), {
    stack, nginx, prefix: uniqueName('w'), workdir: join(tmp.path, 'work'), apps: raw,
    extra: { ...(options.redisUrl ? { redis: options.redisUrl } : {}), ...options.extra },
  });
  const config = loadConfig({ path: configFile, env: {} });
  const redis = connectRedis(config.redis, 'producer');
  await new Promise((resolve) => redis.once('ready', resolve));
  const queue = new DeployQueue({ redis, prefix: config.queue.prefix, attempts: config.worker.attempts, backoffMs: config.worker.backoff_ms });
  return {
    dir: tmp.path, config, configFile, queue, apps,
    async cleanup() {
      const keys = await redis.keys(`${config.queue.prefix}:*`).catch(() => [] as string[]);
      if (keys.length) await redis.del(...keys).catch(() => {});
      await queue.close();
      redis.disconnect();
      await nginx.stop();
      tmp.remove();
    },
  };
}

/** Polls a job until it reaches a final state. */
export const waitForJob = (queue: DeployQueue, id: string, timeoutMs = 120_000): Promise<JobRecord> => waitForJobIn(queue.store, id, { timeoutMs });

export async function waitForStep(queue: DeployQueue, id: string, step: JobRecord['step'], timeoutMs = 60_000): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = await queue.store.mustGet(id);
    if (record.step === step || record.steps.some((s) => s.step === step)) return record;
    if (FINAL_STATES.has(record.state)) throw new Error(`job ${id} ended ${record.state} before ${step}: ${record.error}`);
    if (Date.now() > deadline) throw new Error(`job ${id} never reached ${step}`);
    await sleep(50);
  }
}

export const body = async (url: string) => (await fetch(url, { signal: AbortSignal.timeout(5000) })).text();
