import type { Etcd3 } from 'etcd3';
import type { AppConfig } from '@slipway/config/types';
import type { DeployQueue } from '@slipway/queue/deploy-queue';
import type { JobRecord } from '@slipway/queue/job-types';
import { currentRelease, listReleases, rollbackTarget, type ReleaseRecord } from '@slipway/rollout/release-store';

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
