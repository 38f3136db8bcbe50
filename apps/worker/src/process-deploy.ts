import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { firstLine, isSlipwayError, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { appConfig } from '@slipway/config/app-config';
import { checkout } from '@slipway/build/checkout';
import { buildImage } from '@slipway/build/build-image';
import { rollout } from '@slipway/rollout/rollout';
import { rm } from 'node:fs/promises';
import { FINAL_STATES, type JobRecord, type Step } from '@slipway/queue/job-types';
import { bullJobId } from '@slipway/queue/keys';
import { AppLease, DEFAULT_LEASE_MS } from './app-lease.js';
import type { DeployContext } from './deploy-context.js';
import { JobLog } from './job-log.js';
import { supersededBy } from './supersede.js';

/** How long a job waits before asking again for a busy app. */
export const BUSY_RETRY_MS = 1000;

/**
 * One deploy, start to end: claim the app, give way to a newer push,
 * check out, build, roll out. Decides what BullMQ does next by how it ends:
 * returning (done, superseded, cancelled), DelayedError (app busy),
 * UnrecoverableError (a failure retrying cannot fix) or a plain error
 * (an unreachable dependency: BullMQ retries with backoff).
 */
export async function processDeploy(ctx: DeployContext, job: Job<{ id: string }>, token: string | undefined): Promise<unknown> {
  const id = job.data.id;
  const record = await ctx.store.get(id);
  if (!record) throw new UnrecoverableError(`job record ${id} is missing`);
  if (record.state !== 'waiting' && record.state !== 'active') return { skipped: record.state };

  const logger = ctx.logger.child({ job: id, app: record.app });
  const lease = new AppLease(ctx.redis, ctx.store.keys.appLock(record.app), id, ctx.leaseMs ?? DEFAULT_LEASE_MS, () => logger.warn('lost the app lease'));
  if (!(await lease.acquire())) {
    logger.debug({ holder: await lease.holderOf() }, 'app busy; waiting');
    await job.moveToDelayed(Date.now() + BUSY_RETRY_MS + Math.floor(Math.random() * 200), token);
    throw new DelayedError();
  }

  const log = new JobLog(ctx.store, id, secretsOf(ctx, record.app));
  const controller = new AbortController();
  ctx.running.set(id, controller);
  try {
    const newer = await supersededBy(ctx.store, record.app, id);
    if (newer) {
      log.write(`superseded by job ${newer}: a newer push of ${record.app} replaces this one`);
      await log.flush();
      await ctx.store.finish(id, 'superseded', { supersededBy: newer });
      logger.info({ by: newer }, 'superseded');
      return { superseded: newer };
    }
    if (await ctx.redis.exists(ctx.store.keys.cancel(id))) controller.abort();

    // Attempts started, ours: BullMQ's attemptsMade counts failures only, so a run cut short by a dead worker would not show.
    const attempt = ((await ctx.store.get(id))?.attempts ?? 0) + 1;
    await ctx.store.update(id, { state: 'active', attempts: attempt, startedAt: new Date().toISOString(), error: null });
    logger.info({ attempt }, 'deploy started');
    const result = await deploy(ctx, record, log, controller.signal, attempt);
    await log.flush();
    await ctx.store.step(id, 'done');
    await ctx.store.finish(id, 'completed', { result });
    logger.info({ image: result.image }, 'deploy completed');
    return result;
  } catch (err) {
    return await settleFailure(ctx, job, record, log, err, controller.signal);
  } finally {
    ctx.running.delete(id);
    await log.flush();
    await lease.release();
    await dropSourceWhenDone(ctx, record);
    await promoteWaiting(ctx, record.app, id);
  }
}

/** A pushed tree is kept while its job may still run, and removed once it has ended. */
async function dropSourceWhenDone(ctx: DeployContext, record: JobRecord): Promise<void> {
  if (!record.sourceDir) return;
  const now = await ctx.store.get(record.id).catch(() => null);
  if (now && FINAL_STATES.has(now.state)) await rm(record.sourceDir, { recursive: true, force: true }).catch(() => {});
}

async function deploy(ctx: DeployContext, record: JobRecord, log: JobLog, signal: AbortSignal, attempt: number): Promise<{ image: string; release: string }> {
  const app = appConfig(ctx.config, record.app);
  const step = (s: Step) => ctx.store.step(record.id, s);
  const throwIfCancelled = () => {
    if (signal.aborted) throw new SlipwayError('cancelled', 'cancelled by request');
  };
  log.write(`job ${record.id} (${record.trigger}) for ${record.app}, attempt ${attempt}${record.sha ? `, commit ${record.sha}` : ''}${record.image ? `, image ${record.image}` : ''}`);
  throwIfCancelled();

  let image = record.image;
  if (!image && record.sourceDir && record.sha) {
    await step('build');
    log.section(`build slipway/${app.name}:${record.sha.slice(0, 12)} from the pushed tree`);
    image = (await buildImage({ app, dir: record.sourceDir, sha: record.sha, docker: ctx.docker, log: log.write, signal })).image;
  } else if (!image) {
    if (!record.sha) throw new SlipwayError('invalid_job', 'job has neither a commit nor an image');
    await step('checkout');
    log.section(`checkout ${record.sha.slice(0, 12)}`);
    const tree = await checkout({ app, sha: record.sha, workdir: ctx.config.workdir, log: log.write, signal });
    try {
      throwIfCancelled();
      await step('build');
      log.section(`build slipway/${app.name}:${record.sha.slice(0, 12)}`);
      image = (await buildImage({ app, dir: tree.dir, sha: record.sha, docker: ctx.docker, log: log.write, signal })).image;
    } finally {
      await tree.cleanup();
    }
  }
  throwIfCancelled();
  log.section(`rollout of ${image}`);
  await rollout({
    app, nginx: ctx.config.nginx, image, sha: record.sha, job: record.id,
    docker: ctx.docker, etcd: ctx.etcd, log: log.write, signal,
    onStep: (s) => void step(s).catch(() => {}),
  });
  return { image, release: record.id };
}

async function settleFailure(ctx: DeployContext, job: Job, record: JobRecord, log: JobLog, err: unknown, signal: AbortSignal): Promise<unknown> {
  const id = record.id;
  const message = firstLine(err);
  if ((isSlipwayError(err, 'cancelled') || signal.aborted) && !(err instanceof UnavailableError)) {
    log.write('cancelled: nothing of this deploy went live');
    await log.flush();
    await ctx.store.finish(id, 'cancelled', { error: 'cancelled by request' });
    return { cancelled: true };
  }
  const attempts = job.opts.attempts ?? 1;
  const retryable = err instanceof UnavailableError;
  log.write(`error: ${err instanceof Error ? err.message : String(err)}`);
  if (retryable && job.attemptsMade + 1 < attempts) {
    const delay = (job.opts.backoff as { delay?: number } | undefined)?.delay ?? 0;
    log.write(`will retry (attempt ${job.attemptsMade + 2} of ${attempts}) in about ${Math.max(1, Math.round((delay * 2 ** job.attemptsMade) / 1000))} s`);
    await log.flush();
    await ctx.store.update(id, { state: 'waiting', error: message });
    throw err;
  }
  await log.flush();
  await ctx.store.finish(id, 'failed', { error: message });
  if (retryable) throw err;
  throw new UnrecoverableError(message);
}

/** Wakes the app's jobs that were told to wait while it was busy. */
async function promoteWaiting(ctx: DeployContext, app: string, self: string): Promise<void> {
  for (const id of await ctx.store.waitingIds(app).catch(() => [] as string[])) {
    if (id === self) continue;
    const job = await ctx.queue.getJob(bullJobId(id)).catch(() => undefined);
    if (job && (await job.getState().catch(() => '')) === 'delayed') await job.promote().catch(() => {});
  }
}

function secretsOf(ctx: DeployContext, appName: string): string[] {
  const app = ctx.config.apps[appName];
  return [app?.secret, app?.credentials?.password].filter((s): s is string => Boolean(s));
}
