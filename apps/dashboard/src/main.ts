import Docker from 'dockerode';
import { dockerConnection } from '@slipway/core/docker';
import { managerClient } from '@slipway/rollout/swarm';
import { createLogger } from '@slipway/core/logger';
import { serveUntilSignal } from '@slipway/core/serve-until-signal';
import { serviceStart } from '@slipway/config/service-start';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectRedis } from '@slipway/queue/redis';
import { createEtcdClient } from '@slipway/etcd/client';
import { createDashboard, MissingTokenError } from './create-dashboard.js';

/** How long requests in flight get after SIGTERM/SIGINT; live streams are cut at once (browsers resume them). */
export const SHUTDOWN_GRACE_MS = 5_000;

export interface MainIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/**
 * `slipway-dashboard [--config PATH]`: load config, connect Redis, etcd and
 * Docker, serve on dashboard.host:port until SIGTERM/SIGINT. Resolves with
 * the exit code: 0 after a clean shutdown, 1 if it cannot listen, 2 for bad
 * flags, a bad configuration or a missing `dashboard.token`.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, io: MainIo = process): Promise<number> {
  const start = serviceStart({ name: 'slipway-dashboard', summary: 'Serves the web dashboard and its JSON API on dashboard.host:dashboard.port.', argv, env, io, readsEngineFiles: true });
  if ('exitCode' in start) return start.exitCode;
  const { config } = start;
  if (!config.dashboard.token) {
    io.stderr.write(`${new MissingTokenError(config.file).message}\n`);
    return 2;
  }

  const logger = createLogger({ name: 'slipway-dashboard', level: env.LOG_LEVEL ?? 'info' });
  const redis = connectRedis(config.redis, 'producer');
  redis.on('ready', () => logger.info('redis is reachable'));
  const queue = new DeployQueue({ redis, prefix: config.queue.prefix, attempts: config.worker.attempts, backoffMs: config.worker.backoff_ms });
  const etcd = createEtcdClient(config.etcd);
  const docker = new Docker(dockerConnection(config.docker));
  const manager = config.engine.type === 'swarm' ? managerClient(config.engine) : undefined;
  const dashboard = createDashboard({ config, queue, redis, etcd, docker, manager, logger });

  const server = dashboard.serve(config.dashboard.port, config.dashboard.host);
  const closeAll = async () => {
    dashboard.close();
    await queue.close();
    redis.disconnect();
    etcd.close();
  };
  // Live streams never go idle on their own: end them at the signal; browsers resume elsewhere from their last line.
  const served = await serveUntilSignal({ server, logger, what: 'dashboard', fields: { apps: Object.keys(config.apps).length }, graceMs: SHUTDOWN_GRACE_MS, onSignal: () => dashboard.close() });
  await closeAll();
  if (!served) return 1;
  logger.info('stopped');
  return 0;
}
