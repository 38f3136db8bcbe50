import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from '@slipway/core/logger';
import { serveMetrics } from '@slipway/feedback/metrics';

/*
 * `receiver.processes` > 1: several receiver processes share the webhook
 * port through node:cluster (the primary accepts connections and hands
 * them round-robin to the processes). The primary serves no webhooks: it
 * starts the processes, starts another when one dies, serves `/metrics`
 * summed over them all, and stops them on SIGTERM/SIGINT. What makes a
 * webhook queue once (the delivery claim, the pushed-commit guard, the job
 * records) is one Lua script in Redis, so it holds across processes as it
 * does across concurrent requests of one.
 */

/** Wait before starting a process again after a crash; doubled for each crash in a row, up to RESTART_MAX_MS. */
export const RESTART_MIN_MS = 100;
export const RESTART_MAX_MS = 5000;

export interface ReceiverProcessesOptions {
  processes: number;
  logger: Logger;
  /** `receiver.metrics`: served by the primary, summed over the processes. */
  metricsAddress: string;
  /** How long the processes get to finish their requests after SIGTERM before they are killed. */
  graceMs: number;
}

/**
 * The primary's life: starts `processes` receivers (this same program,
 * which sees it runs as a cluster worker), restarts any that dies after it
 * listened, and stops them all on SIGTERM/SIGINT. Resolves with the exit
 * code: 0 after a clean stop, 1 when a process could not start listening
 * (a taken port: every other would fail the same way).
 */
export async function runReceiverProcesses(options: ReceiverProcessesOptions): Promise<number> {
  const { logger } = options;
  const aggregator = new AggregatorRegistry();
  // serveMetrics asks a registry for its text: this one's text is the processes' registries summed.
  aggregator.metrics = () => aggregator.clusterMetrics();
  const metricsServer = serveMetrics(aggregator as Registry, options.metricsAddress, logger, 'receiver').catch((err: Error) => {
    logger.warn({ err: err.message, address: options.metricsAddress }, 'cannot serve metrics');
    return null;
  });

  const alive = new Set<Worker>();
  let stopping = false;
  let crashesInARow = 0;
  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (finish = resolve));

  const stopAll = (code: number) => {
    if (stopping) return;
    stopping = true;
    for (const worker of alive) worker.process.kill('SIGTERM');
    // A process that does not stop within its grace (and a little more) is killed.
    setTimeout(() => {
      for (const worker of alive) worker.process.kill('SIGKILL');
    }, options.graceMs + 2000).unref();
    const done = () => (alive.size === 0 ? finish(code) : setTimeout(done, 20));
    done();
  };

  const start = () => {
    const worker = cluster.fork();
    alive.add(worker);
    let listened = false;
    worker.once('listening', () => {
      listened = true;
      crashesInARow = 0;
      logger.info({ process: worker.process.pid }, 'receiver process listening');
    });
    worker.once('exit', (code, signal) => {
      alive.delete(worker);
      if (stopping) return;
      if (!listened) {
        logger.error({ process: worker.process.pid, code, signal }, 'a receiver process exited before it listened; stopping the others');
        stopAll(1);
        return;
      }
      crashesInARow++;
      const delayMs = Math.min(RESTART_MIN_MS * 2 ** (crashesInARow - 1), RESTART_MAX_MS);
      logger.error({ process: worker.process.pid, code, signal, restartInMs: delayMs }, 'a receiver process died; starting another');
      setTimeout(() => {
        if (!stopping) start();
      }, delayMs);
    });
  };
  for (let i = 0; i < options.processes; i++) start();

  // Listening with `on`, not `once`: a second signal (systemd's to the whole unit, an impatient
  // operator) must not kill the primary while its processes finish their requests.
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    logger.info({ signal }, 'shutting down');
    stopAll(0);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const code = await finished;
  // The handlers stay (onSignal ignores what comes once stopping): a signal arriving while the
  // caller flushes its log and exits would otherwise kill the primary, exit status lost.
  ((await metricsServer) as Server | null)?.close();
  return code;
}

/**
 * In a cluster worker: answers the primary's requests for this process's
 * metrics from `registry` (prom-client's cluster protocol over IPC).
 */
export function reportMetricsToPrimary(registry: Registry): void {
  AggregatorRegistry.setRegistries(registry);
  // Constructing one installs prom-client's listener for the primary's requests.
  new AggregatorRegistry();
}

/**
 * In a cluster worker: stops once, however many signals come. A process
 * gets SIGTERM from the primary and, when systemd stops the unit, from
 * systemd too; serveUntilSignal takes the first, and without a listener left
 * the second would kill the process mid-drain. A message to a primary that
 * is already gone (EPIPE while closing the server) is not worth a crash.
 */
export function stopOnceAsWorker(logger: Logger): void {
  const ignore = () => {};
  process.on('SIGTERM', ignore);
  process.on('SIGINT', ignore);
  cluster.worker?.on('error', (err: Error) => logger.warn({ err: err.message }, 'lost the primary'));
}
