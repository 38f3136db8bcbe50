import type { Etcd3 } from 'etcd3';
import { InvalidInputError } from '@slipway/core/slipway-error';
import { branchOfRef, isBranchName, isImageReference, isSha, SHA_PREFIX } from '@slipway/core/validate';
import { resolveRef } from '@slipway/build/resolve-ref';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { currentRelease, listReleases, rollbackTarget, type ReleaseRecord } from '@slipway/rollout/release-store';
import type { DeployQueue } from './deploy-queue.js';
import { withRedis } from './redis.js';
import type { JobRecord, Trigger } from './job-types.js';

/*
 * The deploys an operator asks for, by the CLI or the dashboard's buttons
 * alike: an app at a ref or an image, or back to an earlier release. Each
 * is checked and resolved here (a ref to its full commit, a rollback to the
 * release it goes back to) so the job names exactly what it deploys, then
 * queued like any other.
 */

export interface DeployAppOptions {
  config: SlipwayConfig;
  queue: DeployQueue;
  app: AppConfig;
  /** A branch or a (possibly short) sha, resolved against the app's repository. Default: the app's branch. */
  ref?: string;
  /** Deploy this image as it is, skipping checkout and build. */
  image?: string;
  /** Default `cli`. */
  trigger?: Trigger;
  log?: (line: string) => void;
  /** Aborted: resolving the ref stops (git is killed) and nothing is queued. */
  signal?: AbortSignal;
}

/**
 * The shape of a deploy's `ref` or `image`, checked before anything is
 * asked of Redis or git: a bad one is the caller's mistake whether or not
 * the services answer.
 */
export function checkDeployInput(options: { ref?: string; image?: string }): void {
  if (options.ref !== undefined && options.image !== undefined) throw new InvalidInputError('a ref and an image exclude each other');
  if (options.image !== undefined && !isImageReference(options.image)) throw new InvalidInputError(`not an image reference: ${JSON.stringify(options.image)}`);
  if (options.ref !== undefined && !isBranchName(options.ref) && !SHA_PREFIX.test(options.ref)) throw new InvalidInputError(`not a branch or commit: ${JSON.stringify(options.ref)}`);
}

/**
 * "Deploy this app at this ref" (or this image): what `slipway deploy` and
 * the dashboard's deploy button both do. Resolves the ref to a full sha
 * first, so the job names exactly what it builds.
 */
export async function deployApp(options: DeployAppOptions): Promise<JobRecord> {
  const { app, queue } = options;
  const trigger = options.trigger ?? 'cli';
  checkDeployInput(options);
  if (options.image !== undefined) return queue.enqueue({ app: app.name, sha: null, ref: null, image: options.image, trigger });
  const ref = options.ref ?? app.branch;
  // Read before the branch is: a push queued after this was pushed after the head we deploy (see JobRecord.chosenAfter).
  const chosenAfter = await withRedis(queue.redis, () => queue.store.lastJobId());
  // Only what the configured branch reaches is deployed, whoever asks (not_on_branch otherwise).
  const sha = await resolveRef({ app, ref, workdir: options.config.workdir, log: options.log, onBranch: app.branch, signal: options.signal });
  options.signal?.throwIfAborted();
  const isBranch = isBranchName(ref) && !(isSha(ref) || (SHA_PREFIX.test(ref) && sha.startsWith(ref)));
  // A commit asked for by id is deployed over anything, on purpose; the head of a branch is only as new as the branch was.
  // Kept as the branch's name, as a webhook's job keeps it (`refs/heads/master` is `master`): pushes of the branch are matched by it.
  const branch = isBranch ? (branchOfRef(ref) ?? ref) : null;
  return queue.enqueue({ app: app.name, sha, ref: branch, image: null, trigger, ...(branch !== null ? { chosenAfter } : {}) });
}

export interface RollbackAppOptions {
  queue: DeployQueue;
  etcd: Etcd3;
  app: AppConfig;
  /** A kept release's commit (7-40 hex); default: the newest release whose image differs from the live one. */
  to?: string;
}

/**
 * "Back to an earlier release": what `slipway rollback` and the dashboard
 * both do. Picks the target now (so the job names it) and queues a deploy
 * of its image: no rebuild, the same zero-downtime rollout as any deploy,
 * one app at a time with everything else in the queue.
 */
export async function rollbackApp(options: RollbackAppOptions): Promise<{ job: JobRecord; target: ReleaseRecord }> {
  const { app } = options;
  const [history, current] = await Promise.all([listReleases(options.etcd, app.name), currentRelease(options.etcd, app.name)]);
  const target = rollbackTarget(history, current, options.to);
  const job = await options.queue.enqueue({ app: app.name, sha: target.sha, ref: null, image: target.image, trigger: 'rollback' });
  return { job, target };
}
