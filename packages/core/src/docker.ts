import { InvalidInputError, SlipwayError, UnavailableError } from './slipway-error.js';
import { assertAppName, assertSha } from './validate.js';

/**
 * The Docker engine as Slipway uses it: how to connect, what its failures
 * mean, and the conventions every image and container follows (labels,
 * image names). One place, so that the builder and the rollout can never
 * disagree on either.
 */

/** Docker labels on every image and container Slipway makes; old containers are found by these, never by image name. */
export const LABELS = {
  app: 'slipway.app',
  /** The full 40-hex commit; absent for an image deploy. */
  sha: 'slipway.sha',
  /** The job (release) id that started the container. */
  release: 'slipway.release',
  /** routing: dns only: the address of `dns.address_pool` the container is published on; allocations are derived from these. */
  address: 'slipway.address',
  /** A test step's container (its step name): never serves traffic; one left by a crash is removed before the app's next steps, and by its next rollout. */
  step: 'slipway.step',
} as const;

/**
 * Why an image may not run as an app's container, or null: containers
 * inherit their image's labels, and Slipway tells its containers apart by
 * these. An image that sets `slipway.step` would have its live containers
 * swept as a crashed test step's, `slipway.release` taken for another
 * release's. `slipway.app` and `slipway.sha` are what every image Slipway
 * builds carries, and what each container sets for itself.
 */
export function reservedLabelsProblem(image: string, labels: Readonly<Record<string, string>>): string | null {
  const reserved = Object.values(LABELS).filter((key) => key !== LABELS.app && key !== LABELS.sha && key in labels);
  if (reserved.length === 0) return null;
  const one = reserved.length === 1;
  return `${image} sets the label${one ? '' : 's'} ${reserved.join(', ')} (a LABEL of its Dockerfile or of its base image): Slipway sets these labels on the containers it runs, to tell them apart; remove ${one ? 'it' : 'them'}`;
}

/** `slipway/<app>:<sha12>`, the image a commit of an app is built into. */
export function imageName(app: string, sha: string): string {
  return `slipway/${assertAppName(app, 'app')}:${assertSha(sha).slice(0, 12)}`;
}

/** dockerode constructor options for a `docker:` URL (`unix:///path`, `tcp://host:port`). */
export interface DockerConnectionOptions {
  socketPath?: string;
  host?: string;
  port?: number;
  protocol?: 'http' | 'https';
}

export function dockerConnection(url: string): DockerConnectionOptions {
  const parsed = new URL(url);
  switch (parsed.protocol) {
    case 'unix:':
      return { socketPath: decodeURIComponent(parsed.pathname) };
    case 'tcp:':
    case 'http:':
      return { host: parsed.hostname, port: Number(parsed.port || 2375), protocol: 'http' };
    case 'https:':
      return { host: parsed.hostname, port: Number(parsed.port || 2376), protocol: 'https' };
    default:
      throw new InvalidInputError(`unsupported docker URL ${url}`);
  }
}

/** Error codes of a connection that never reached the engine, or was cut. */
const UNREACHABLE = new Set([
  'ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EACCES', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENOTFOUND', 'EAI_AGAIN', 'ESOCKETTIMEDOUT', 'UND_ERR_SOCKET',
]);

/**
 * What dockerode threw, in Slipway's terms, translated in this one place:
 * no engine at the address, or a connection cut (or an engine answering
 * that it cannot reach its own daemon, or a swarm manager that it has no
 * leader for the moment) is an UnavailableError, worth
 * retrying; any other answer from the engine a non-retryable
 * `docker_error` carrying its HTTP status (see {@link dockerStatus}).
 * `doing` says what was being done (`starting web-1`).
 */
export function dockerError(err: unknown, doing: string): SlipwayError {
  if (err instanceof SlipwayError) return err;
  const e = err as { code?: string; statusCode?: number; json?: { message?: string } | null; reason?: string; message?: string };
  const detail = String(e?.json?.message ?? e?.reason ?? e?.message ?? err).split('\n', 1)[0] ?? '';
  const unreachable = (e?.code !== undefined && UNREACHABLE.has(e.code))
    || /socket hang up/.test(e?.message ?? '')
    || (typeof e?.statusCode === 'number' && e.statusCode >= 500
      // A swarm manager between leaders (an election, a lost quorum) answers 503 until one is elected, and a write caught
      // in an election fails 500 with raft's or gRPC's words for it: the request may be made again, never the caller's fault.
      && /connection refused|cannot connect|is the docker daemon running|does not have a leader|no leader|rpc error: code = (Unavailable|DeadlineExceeded)|context deadline exceeded|proposal dropped|raft: stopped/i.test(detail));
  if (unreachable) return new UnavailableError('docker', `Docker is unreachable while ${doing}: ${detail}`, { cause: err });
  return new SlipwayError('docker_error', `Docker failed while ${doing}: ${detail}`, { status: e?.statusCode, cause: err });
}

/**
 * What Docker says when the host, its network or a registry failed rather
 * than what was asked of it: a base image's pull, or an image's push to
 * the swarm's registry, that could not reach the registry or was refused
 * for its rate, a disk that is full. A build step that ran and failed has
 * an exit code instead, and is the commit's (its own network trouble
 * included: the step chose to fail).
 */
const HOST_FAILURE = /toomanyrequests|rate limit|no space left on device|i\/o timeout|TLS handshake timeout|no such host|connection refused|connection reset by peer|network is unreachable|server misbehaving|unexpected EOF|\b50[0234] (Internal Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out)/i;

/**
 * A failure that is the host's, its network's or a registry's
 * (HOST_FAILURE), as an UnavailableError: retried, and reported as
 * Slipway's (commit status `error`), not blamed on the commit. Null for
 * any other failure.
 */
export function hostFailure(message: string, cause?: unknown): UnavailableError | null {
  return HOST_FAILURE.test(message) ? new UnavailableError('docker', message, { cause }) : null;
}

/** The HTTP status Docker answered with, if it answered. */
export function dockerStatus(err: unknown): number | undefined {
  return (err as { statusCode?: number; cause?: { statusCode?: number } }).statusCode ?? (err as { cause?: { statusCode?: number } }).cause?.statusCode;
}

/**
 * One Docker call with its errors translated by {@link dockerError};
 * statuses in `ignore` (a container or service already gone: 404, 409)
 * resolve to undefined instead.
 */
export async function dockerCall<T>(doing: string, fn: () => Promise<T>, ignore: readonly number[] = []): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    const status = dockerStatus(err);
    if (status !== undefined && ignore.includes(status)) return undefined;
    throw dockerError(err, doing);
  }
}

/**
 * How long one call to the engine may take (a stop: its grace period
 * more). An engine that takes the connection and never answers is then
 * unreachable, as one refusing it is: whoever called (a rollout, a build's test
 * step: each holding its app's lock) fails `unavailable`, and is retried,
 * instead of waiting for ever.
 */
export const ENGINE_TIMEOUT_MS = 60_000;

/**
 * One Docker call, as dockerCall makes it, given `timeoutMs`: an engine
 * that took the connection and never answers (wedged, black-holed) is then
 * unreachable, as one refusing it is (UnavailableError, worth retrying),
 * and whoever called it (a rollout holding its app's lock) does not wait
 * for ever. `call` gets a signal that aborts its request at the deadline,
 * where dockerode takes one; either way the call is abandoned then.
 * `engine` names who did not answer (`Docker`, `the swarm manager`).
 */
export async function dockerCallWithin<T>(doing: string, call: (abortSignal: AbortSignal) => Promise<T>, options: { timeoutMs: number; ignore?: readonly number[]; engine?: string }): Promise<T | undefined> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new UnavailableError('docker', `${options.engine ?? 'Docker'} did not answer within ${options.timeoutMs / 1000} s while ${doing}`));
    }, options.timeoutMs);
  });
  try {
    return await dockerCall(doing, () => Promise.race([call(controller.signal), deadline]), options.ignore);
  } finally {
    clearTimeout(timer);
  }
}
