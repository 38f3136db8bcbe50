import { dockerError } from '@slipway/core/docker';
import { BuildError } from './build-error.js';

/**
 * A dockerode failure of the build request itself (not a failed step), by
 * core's one Docker translation: no connection stays an UnavailableError
 * (retry later); Docker refusing the request (a bad Dockerfile path, a bad
 * option) is the commit's BuildError. Programming errors pass through.
 */
export function dockerFailure(err: unknown): Error {
  if (err instanceof TypeError || err instanceof RangeError) return err;
  const translated = dockerError(err, 'building');
  if (translated.code !== 'docker_error') return translated;
  return new BuildError(`docker build failed: ${translated.message.replace(/^Docker failed while building: /, '')}`, { cause: err });
}
