import { SlipwayError } from '@slipway/core/slipway-error';

/**
 * Whether a failed deploy is the commit's failure or Slipway's error.
 * `failure`: what was pushed does not deploy (the build fails, the new
 * containers do not start or stay unhealthy, nginx rejects the config, the
 * commit or image is not there). `error`: Slipway could not do its part
 * (Redis, etcd or Docker unreachable after every attempt, nginx would not
 * reload, the rollout lock stayed taken, credentials refused, a bug):
 * pushing again may work.
 */
export type FailureKind = 'failure' | 'error';

/** The error says whose fault it was (see `Fault`): anything but Slipway's own is the commit's `failure`. */
export function failureKind(err: unknown): FailureKind {
  return err instanceof SlipwayError && err.fault !== 'slipway' ? 'failure' : 'error';
}
