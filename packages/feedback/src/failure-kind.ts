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

const COMMIT_FAILURES: ReadonlySet<string> = new Set([
  'build_failed', 'health_failed', 'container_start_failed', 'nginx_check_failed', 'template_invalid',
  'image_not_found', 'release_not_found', 'sha_not_found', 'unknown_ref', 'ambiguous_ref',
]);

export function failureKind(err: unknown): FailureKind {
  return err instanceof SlipwayError && COMMIT_FAILURES.has(err.code) ? 'failure' : 'error';
}
