import { parseArgs } from 'node:util';
import { createLogger } from '@slipway/core/logger';
import { ConfigError } from '@slipway/config/config-error';
import { loadConfig } from '@slipway/config/load-config';
import { serveMetrics } from '@slipway/feedback/serve-metrics';
import { createDeployWorker } from './deploy-worker.js';

const USAGE = 'usage: slipway-worker [--config PATH] [--concurrency N]';

/** The worker process: the only place that reads argv and the environment. */
export async function runMain(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  let args;
  try {
    args = parseArgs({ args: argv, options: { config: { type: 'string' }, concurrency: { type: 'string' }, help: { type: 'boolean' } }, strict: true }).values;
  } catch (err) {
    process.stderr.write(`slipway-worker: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let config;
  try {
    config = loadConfig({ path: args.config, env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const concurrency = args.concurrency === undefined ? undefined : Number(args.concurrency);
  if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency > 0)) {
    process.stderr.write(`slipway-worker: --concurrency must be a positive integer\n${USAGE}\n`);
    process.exit(2);
  }
  const logger = createLogger({ name: 'slipway-worker', level: env.LOG_LEVEL ?? 'info' });
  const worker = createDeployWorker({ config, logger, concurrency });
  const metricsServer = serveMetrics(worker.metrics.registry, config.worker.metrics, logger).catch((err: Error) => {
    logger.warn({ err: err.message, address: config.worker.metrics }, 'cannot serve metrics');
    return null;
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
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
  logger.info({ redis: config.redis.replace(/\/\/[^@]*@/, '//***@'), queue: config.queue.prefix, concurrency: concurrency ?? config.worker.concurrency }, 'slipway-worker taking jobs');
}
