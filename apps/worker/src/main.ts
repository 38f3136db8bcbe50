import { createLogger } from '@slipway/core/logger';
import { sharedServerNames } from '@slipway/config/load-config';
import { serviceStart } from '@slipway/config/service-start';
import { serveMetrics } from '@slipway/feedback/metrics';
import { redisForDisplay } from '@slipway/queue/redis';
import { createDeployWorker } from './deploy-worker.js';

/** The worker process: the only place that reads argv and the environment. */
export async function runMain(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const start = serviceStart({
    name: 'slipway-worker', summary: 'Takes deploy jobs from the queue: checkout, docker build, zero-downtime rollout.',
    argv, env, io: process, readsEngineFiles: true,
    flags: { concurrency: { type: 'string' } }, help: { concurrency: 'jobs run at once (default worker.concurrency)' },
  });
  if ('exitCode' in start) {
    process.exitCode = start.exitCode;
    return;
  }
  const { config, flags } = start;
  const concurrency = flags.concurrency === undefined ? undefined : Number(flags.concurrency);
  if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency > 0)) {
    process.stderr.write(`slipway-worker: --concurrency must be a positive integer, got ${JSON.stringify(flags.concurrency)}\n`);
    process.exitCode = 2;
    return;
  }
  const logger = createLogger({ name: 'slipway-worker', level: env.LOG_LEVEL ?? 'info' });
  for (const problem of sharedServerNames(config)) logger.warn(problem);
  const worker = createDeployWorker({ config, logger, concurrency });
  const metricsServer = serveMetrics(worker.metrics.registry, config.worker.metrics, logger).catch((err: Error) => {
    logger.warn({ err: err.message, address: config.worker.metrics }, 'cannot serve metrics');
    return null;
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.info({ signal }, 'stopping now: running deploys stop at their next safe point, for another worker to run');
      worker.hurry();
      return;
    }
    stopping = true;
    logger.info({ signal }, 'stopping: no new jobs; letting running deploys finish');
    worker.close().then(async () => {
      // Metrics were served until the running deploys finished.
      (await metricsServer)?.close();
      logger.info('stopped');
      process.exit(0);
    }, (err: Error) => {
      logger.error({ err: err.message }, 'unclean stop');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await worker.ready().catch(() => {});
  logger.info({ redis: redisForDisplay(config.redis), queue: config.queue.prefix, concurrency: concurrency ?? config.worker.concurrency }, 'slipway-worker taking jobs');
}
