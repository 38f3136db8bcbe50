import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ContainerRuntime } from './container-runtime.js';
import { CancelledError, HealthCheckError } from './rollout-errors.js';

/*
 * Is a new container ready for traffic? Our own HTTP probe of the app's
 * `health.path`, not Docker's HEALTHCHECK (30 s default interval).
 */

/** Lines of a failed container's log quoted in the error. */
export const LOG_TAIL_LINES = 15;
/** Longest single probe: a hung app must not stall the loop past its deadline. */
const PROBE_TIMEOUT_MS = 2_000;
/** How often "still waiting" is logged. */
const PROGRESS_EVERY_MS = 2_000;

export interface WaitHealthyOptions {
  runtime: Pick<ContainerRuntime, 'healthState' | 'logTail'>;
  path: string;
  timeoutMs: number;
  intervalMs: number;
  signal?: AbortSignal;
  log: (line: string) => void;
  /** Applied to the container's log before it is quoted (secrets from the app's env). */
  scrub?: (text: string) => string;
}

/**
 * Waits until every container answers 2xx (see waitHealthy). The first
 * failure stops the other probes (no point waiting for them) and is
 * thrown; a CancelledError only when `signal` itself fired.
 */
export async function waitAllHealthy(containers: ReadonlyArray<{ id: string; address: string | null }>, options: WaitHealthyOptions): Promise<void> {
  const stopProbes = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stopProbes.signal]) : stopProbes.signal;
  const probes = containers.map((container) => waitHealthy(container, { ...options, signal }).catch((err: unknown) => {
    stopProbes.abort();
    throw err;
  }));
  const outcomes = await Promise.allSettled(probes);
  const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected' && !(o.reason instanceof CancelledError && !options.signal?.aborted));
  if (failure) throw failure.reason;
}

/**
 * Probes `http://<address><path>` every `intervalMs` until a 2xx. Between
 * failed attempts the container is inspected: one that exited or was
 * restarted by its restart policy fails at once, quoting its log.
 */
async function waitHealthy(container: { id: string; address: string | null }, options: WaitHealthyOptions): Promise<{ ms: number; attempts: number }> {
  const { runtime, log } = options;
  const id12 = container.id.slice(0, 12);
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  let attempts = 0;
  let last = 'not probed yet';
  let lastProgress = started;
  const fail = async (reason: string) => {
    const tail = await runtime.logTail(container.id, LOG_TAIL_LINES).catch(() => '');
    return new HealthCheckError(container.id, reason, options.scrub ? options.scrub(tail) : tail);
  };

  for (;;) {
    if (options.signal?.aborted) throw new CancelledError('the health check');
    if (container.address !== null) {
      attempts++;
      const outcome = await probe(`http://${container.address}${options.path}`, Math.min(PROBE_TIMEOUT_MS, Math.max(deadline - Date.now(), 100)), options.signal);
      if (options.signal?.aborted) throw new CancelledError('the health check');
      if (outcome.status !== undefined && outcome.status >= 200 && outcome.status < 300) {
        const ms = Date.now() - started;
        log(`health: ${id12} at ${container.address} answered ${outcome.status} on ${options.path} after ${(ms / 1000).toFixed(1)} s (${attempts} attempt${attempts === 1 ? '' : 's'})`);
        return { ms, attempts };
      }
      const reason = outcome.status !== undefined ? `HTTP ${outcome.status}` : outcome.error!;
      if (attempts === 1 || reason !== last) log(`health: ${id12} attempt ${attempts}: ${reason}`);
      last = reason;
    }
    const state = await runtime.healthState(container.id);
    if (!state.running || state.restarted) {
      const how = state.restarted ? 'crashed and was restarted' : `exited${state.exitCode !== null ? ` with code ${state.exitCode}` : ''}`;
      throw await fail(`${how} before answering 2xx on ${options.path}`);
    }
    if (Date.now() >= deadline) {
      throw await fail(`did not answer 2xx on ${options.path} within ${options.timeoutMs / 1000} s (${attempts} attempts, last: ${last})`);
    }
    if (Date.now() - lastProgress >= PROGRESS_EVERY_MS) {
      log(`health: ${id12} still waiting after ${((Date.now() - started) / 1000).toFixed(0)} s (${attempts} attempts, last: ${last})`);
      lastProgress = Date.now();
    }
    await sleep(Math.min(options.intervalMs, Math.max(deadline - Date.now(), 0)), undefined, { signal: options.signal }).catch(() => {});
  }
}

/**
 * One GET on a fresh connection (closed afterwards, so it never counts as a
 * connection to drain). Answered by the status line: a body is not waited
 * for, since an app may stream one for ever, and the whole attempt, from
 * connecting to the status, is bounded by `timeoutMs` (a socket's idle
 * timeout alone is not: an app that trickles a byte a second never idles).
 */
export function probe(url: string, timeoutMs: number, signal?: AbortSignal): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false, headers: { connection: 'close', 'user-agent': 'slipway-health' }, signal }, (res) => {
      clearTimeout(timer);
      resolve({ status: res.statusCode });
      req.destroy();
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ error: err.code === 'ECONNREFUSED' ? 'connection refused' : err.code === 'ECONNRESET' ? 'connection reset' : err.message });
    });
    req.end();
  });
}
