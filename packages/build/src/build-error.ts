import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { dockerError } from '@slipway/core/docker';

/** The step a build stopped at, as Docker's classic builder numbers it. */
export interface FailedStep {
  index: number;
  total: number;
  /** The instruction as Docker echoed it (`RUN npm run assets`). */
  instruction: string;
}

/**
 * A build that ran and failed: the Dockerfile, the code or the build
 * arguments are wrong, so it is never retried (code `build_failed`). The
 * message's first line names the failing step; the lines after it are that
 * step's last output.
 */
export class BuildError extends SlipwayError {
  readonly step: FailedStep | undefined;
  readonly exitCode: number | undefined;
  /** The failing step's last output lines. */
  readonly output: readonly string[];

  constructor(message: string, details: { step?: FailedStep; exitCode?: number; output?: readonly string[]; cause?: unknown } = {}) {
    super('build_failed', message, { cause: details.cause, fault: 'commit' });
    this.name = 'BuildError';
    this.step = details.step;
    this.exitCode = details.exitCode;
    this.output = details.output ?? [];
  }
}

/**
 * What Docker says when the build host, its network or a registry failed
 * rather than the commit: a base image's pull that could not reach its
 * registry or was refused for its rate, a disk that is full. A step that
 * ran and failed has an exit code instead, and is the commit's (its own
 * network trouble included: the step chose to fail).
 */
const HOST_FAILURE = /toomanyrequests|rate limit|no space left on device|i\/o timeout|TLS handshake timeout|no such host|connection refused|connection reset by peer|network is unreachable|server misbehaving|unexpected EOF|\b50[234] (Bad Gateway|Service Unavailable|Gateway Time-?out)/i;

/**
 * A build failure that is the host's, its network's or a registry's
 * (HOST_FAILURE), as an UnavailableError: retried, and reported as
 * Slipway's (commit status `error`), not blamed on the commit. Null for
 * any other failure.
 */
export function hostFailure(message: string, cause?: unknown): UnavailableError | null {
  return HOST_FAILURE.test(message) ? new UnavailableError('docker', message, { cause }) : null;
}

/**
 * A dockerode failure of the build request itself (not a failed step), by
 * core's one Docker translation: no connection stays an UnavailableError
 * (retry later), as does the host or a registry failing (HOST_FAILURE);
 * Docker refusing the request (a bad Dockerfile path, a bad option) is the
 * commit's BuildError. Programming errors pass through.
 */
export function dockerFailure(err: unknown): Error {
  if (err instanceof TypeError || err instanceof RangeError) return err;
  const translated = dockerError(err, 'building');
  if (translated.code !== 'docker_error') return translated;
  const message = `docker build failed: ${translated.message.replace(/^Docker failed while building: /, '')}`;
  return hostFailure(message, err) ?? new BuildError(message, { cause: err });
}
