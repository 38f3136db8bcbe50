import cluster from 'node:cluster';
import { pino } from 'pino';
import { BUFFERED_FLUSH_MS, createLogger, flushLogger, LOG_BUFFER_MAX_BYTES } from '@slipway/core/logger';
import { serveUntilSignal } from '@slipway/core/serve-until-signal';
import { serviceStart } from '@slipway/config/service-start';
import { ReceiverFeedback } from '@slipway/feedback/receiver-feedback';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectReceiverRedis, createReceiver, listenReceiver } from './create-receiver.js';
import { reportMetricsToPrimary, runReceiverProcesses, stopOnceAsWorker } from './receiver-processes.js';

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
 * With `receiver.processes` > 1 this process becomes the primary of that
 * many receivers sharing the port (receiver-processes.ts), each of which
 * runs this same function as a cluster worker.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, io: MainIo = process): Promise<number> {
  const start = serviceStart({ name: 'slipway-receiver', summary: 'Receives GitHub, Gitea/Forgejo/Gogs and GitLab push webhooks and queues deploys.', argv, env, io });
  if ('exitCode' in start) return start.exitCode;
  const { config } = start;

  const level = env.LOG_LEVEL ?? 'info';
  const logger = cluster.isWorker
    // Several processes write to one stdout: each write must be whole lines and at most PIPE_BUF
    // (4 KB), which a pipe writes at once, or lines of two processes could be torn into each other.
    ? createLogger({ name: 'slipway-receiver', level, destination: pino.destination({ dest: 1, sync: false, minLength: 2048, maxWrite: 4096, maxLength: LOG_BUFFER_MAX_BYTES, periodicFlush: BUFFERED_FLUSH_MS }) as unknown as NodeJS.WritableStream })
    // Buffered: one line per webhook must not cost a system call each.
    : createLogger({ name: 'slipway-receiver', level, buffered: true });
  if (cluster.isPrimary && config.receiver.processes > 1) {
    const code = await runReceiverProcesses({ processes: config.receiver.processes, logger, metricsAddress: config.receiver.metrics, graceMs: SHUTDOWN_GRACE_MS });
    if (code === 0) logger.info('stopped');
    await flushLogger(logger);
    return code;
  }
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

  const server = listenReceiver(app, config.receiver.port, config.receiver.host);
  // One of several processes: the primary serves /metrics, summed over all of them.
  if (cluster.isWorker) {
    reportMetricsToPrimary(feedback.metrics.registry);
    stopOnceAsWorker(logger);
  }
  const metricsServer = cluster.isWorker ? Promise.resolve(null) : feedback.serveMetrics(config.receiver.metrics).catch((err: Error) => {
    logger.warn({ err: err.message, address: config.receiver.metrics }, 'cannot serve metrics');
    return null;
  });

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
