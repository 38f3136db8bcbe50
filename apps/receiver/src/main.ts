import { createLogger, flushLogger } from '@slipway/core/logger';
import { serveUntilSignal } from '@slipway/core/serve-until-signal';
import { serviceStart } from '@slipway/config/service-start';
import { ReceiverFeedback } from '@slipway/feedback/receiver-feedback';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectReceiverRedis, createReceiver } from './create-receiver.js';

/** How long in-flight requests get to finish after SIGTERM/SIGINT. */
export const SHUTDOWN_GRACE_MS = 10_000;

export interface MainIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/**
 * `slipway-receiver [--config PATH]`: load config, connect Redis as a
 * producer, listen on receiver.host:port until SIGTERM/SIGINT, with
 * `GET /metrics` on receiver.metrics (when that address is taken, by a
 * second receiver on the machine, it serves no metrics and says so).
 * Resolves with the exit code: 0 after a clean shutdown, 1 if it cannot
 * listen on receiver.host:port, 2 for bad flags or configuration.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, io: MainIo = process): Promise<number> {
  const start = serviceStart({ name: 'slipway-receiver', summary: 'Receives GitHub, Gitea/Forgejo/Gogs and GitLab push webhooks and queues deploys.', argv, env, io });
  if ('exitCode' in start) return start.exitCode;
  const { config } = start;

  // Buffered: one line per webhook must not cost a system call each.
  const logger = createLogger({ name: 'slipway-receiver', level: env.LOG_LEVEL ?? 'info', buffered: true });
  const redis = connectReceiverRedis(config.redis);
  let redisUp = false;
  redis.on('ready', () => {
    redisUp = true;
    logger.info('redis is reachable');
  });
  redis.on('error', (err: Error) => {
    if (redisUp) logger.warn({ err: err.message }, 'redis is unreachable; webhooks are answered 503 until it is back');
    redisUp = false;
  });
  const queue = new DeployQueue({ redis, prefix: config.queue.prefix, attempts: config.worker.attempts, backoffMs: config.worker.backoff_ms });
  const feedback = new ReceiverFeedback({ config, queue, logger });
  const app = createReceiver({ config, queue, logger, metrics: feedback.metrics, onQueued: feedback.onQueued });

  const server = app.listen(config.receiver.port, config.receiver.host);
  const metricsServer = feedback.serveMetrics(config.receiver.metrics).catch((err: Error) => {
    logger.warn({ err: err.message, address: config.receiver.metrics }, 'cannot serve metrics');
    return null;
  });
  // Slow or stalled uploads must not hold connections forever.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;

  const closeAll = async () => {
    (await metricsServer)?.close();
    await feedback.close();
    await queue.close();
    redis.disconnect();
  };
  const served = await serveUntilSignal({ server, logger, what: 'receiver', fields: { apps: Object.keys(config.apps).length }, graceMs: SHUTDOWN_GRACE_MS, onListening: () => void flushLogger(logger) });
  await closeAll();
  if (!served) {
    await flushLogger(logger);
    return 1;
  }
  logger.info('stopped');
  await flushLogger(logger);
  return 0;
}
