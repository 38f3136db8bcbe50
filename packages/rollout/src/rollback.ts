import { InvalidInputError } from '@slipway/core/slipway-error';
import { SHA_PREFIX, quote } from '@slipway/core/validate';
import { dockerRuntime } from './docker-runtime.js';
import { etcdReleaseStore } from './etcd-release-store.js';
import type { ReleaseRecord } from './release-record.js';
import { ImageNotFoundError, ReleaseNotFoundError } from './rollout-errors.js';
import { rollout, type RolloutOptions } from './rollout.js';
import type { RolloutResult } from './rollout-types.js';

export interface RollbackOptions extends Omit<RolloutOptions, 'image' | 'sha'> {
  /** A commit (7 to 40 hex digits) of a kept release. Default: the newest release whose image differs from the live one. */
  to?: string;
}

/** Picks the release to go back to. Pure. `history` is newest first. */
export function rollbackTarget(history: readonly ReleaseRecord[], current: ReleaseRecord | null, to?: string): ReleaseRecord {
  if (to !== undefined) {
    if (!SHA_PREFIX.test(to)) throw new InvalidInputError(`--to must be 7 to 40 lowercase hex digits, got ${quote(to)}`);
    const match = history.find((r) => r.sha !== null && r.sha.startsWith(to));
    if (!match) throw new ReleaseNotFoundError(`no kept release has commit ${to} (kept: ${history.map((r) => r.sha?.slice(0, 12) ?? r.image).join(', ') || 'none'})`);
    return match;
  }
  const target = history.find((r) => r.image !== current?.image);
  if (!target) throw new ReleaseNotFoundError(current ? `no release before ${current.job} (${current.image}) is kept` : 'no release to roll back to');
  return target;
}

/**
 * Rolls out an earlier release's image again, through the same
 * zero-downtime path as any rollout: no rebuild, the image must still be on
 * the Docker host. The rollback is itself recorded as a new release.
 */
export async function rollback(options: RollbackOptions): Promise<RolloutResult> {
  const store = etcdReleaseStore(options.etcd);
  const [history, current] = await Promise.all([store.listReleases(options.app.name), store.currentRelease(options.app.name)]);
  const target = rollbackTarget(history, current, options.to);
  if (!(await dockerRuntime(options.docker).imageExists(target.image))) throw new ImageNotFoundError(target.image);
  options.log?.(`rollback of ${options.app.name} to release ${target.job} from ${target.at}: ${target.image}`);
  return rollout({ ...options, image: target.image, sha: target.sha });
}
