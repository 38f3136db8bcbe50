import { SlipwayError } from '@slipway/core/slipway-error';
import { dockerError, hostFailure } from '@slipway/core/docker';

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
