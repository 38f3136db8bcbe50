import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { firstLine, isSlipwayError, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { appConfig } from '@slipway/config/app-config';
import { checkout } from '@slipway/build/checkout';
import { buildImage, type BuiltImage } from '@slipway/build/build-image';
import { rollout } from '@slipway/rollout/rollout';
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

  const log = await JobLog.open(ctx.store, id, { secrets: secretsOf(ctx, record.app), maxLines: ctx.config.jobs.log_max_lines, maxBytes: ctx.config.jobs.log_max_bytes });
  const controller = new AbortController();
  ctx.running.set(id, controller);
  try {
    const newer = await supersededBy(ctx.store, record.app, id);
    if (newer) {
      log.write(`superseded by job ${newer}: a newer push of ${record.app} replaces this one`);
      await log.flush();
      ctx.feedback?.finished(await ctx.store.finish(id, 'superseded', { supersededBy: newer }));
      logger.info({ by: newer }, 'superseded');
      return { superseded: newer };
    }
    if (await ctx.redis.exists(ctx.store.keys.cancel(id))) controller.abort();

    // Attempts started, ours: BullMQ's attemptsMade counts failures only, so a run cut short by a dead worker would not show.
    const attempt = ((await ctx.store.get(id))?.attempts ?? 0) + 1;
    ctx.feedback?.started(await ctx.store.update(id, { state: 'active', attempts: attempt, startedAt: new Date().toISOString(), error: null }), attempt);
    logger.info({ attempt }, 'deploy started');
    const result = await deploy(ctx, record, log, controller.signal, attempt);
    await log.flush();
    await ctx.store.step(id, 'done');
    ctx.feedback?.finished(await ctx.store.finish(id, 'completed', { result }));
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

/** `repo: owner/name` matches webhooks from any forge, but names nothing to clone. */
const OWNER_NAME = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;

/**
 * The app as a deploy of this job must see it: an `owner/name` repo is
 * cloned from the URL the verified webhook named (the receiver validated
 * it); anything else is cloned from the configured repo.
 */
function appForJob(ctx: DeployContext, record: JobRecord) {
  const app = appConfig(ctx.config, record.app);
  if (!OWNER_NAME.test(app.repo)) return app;
  const cloneUrl = record.push?.repository.cloneUrl;
  if (!cloneUrl) throw new SlipwayError('invalid_job', `${app.name}'s repo is ${app.repo}, which names no URL to clone, and job ${record.id} came with none (deploy it from a webhook, or set repo to a clone URL)`);
  return { ...app, repo: cloneUrl };
}

async function deploy(ctx: DeployContext, record: JobRecord, log: JobLog, signal: AbortSignal, attempt: number): Promise<{ image: string; release: string }> {
  const app = appForJob(ctx, record);
  // One step update at a time: each is a read-modify-write of the timeline, and the rollout reports
  // its steps without waiting (a first release's `switch` and `drain` come a moment apart).
  let steps: Promise<void> = Promise.resolve();
  const step = (s: Step) => (steps = steps.catch(() => {}).then(() => ctx.store.step(record.id, s)));
  const throwIfCancelled = () => {
    if (signal.aborted) throw new SlipwayError('cancelled', 'cancelled by request');
  };
  log.write(`job ${record.id} (${record.trigger}) for ${record.app}, attempt ${attempt}${record.sha ? `, commit ${record.sha}` : ''}${record.image ? `, image ${record.image}` : ''}`);
  throwIfCancelled();

  let image = record.image;
  const pushedTree = record.sourceDir && existsSync(record.sourceDir) ? record.sourceDir : null;
  if (record.sourceDir && !pushedTree) log.write(`the pushed tree of this job is gone (the push was refused); checking out ${record.sha?.slice(0, 12)} instead`);
  if (!image && pushedTree && record.sha) {
    await step('build');
    log.section(`build slipway/${app.name}:${record.sha.slice(0, 12)} from the pushed tree`);
    image = built(ctx, app.name, await buildImage({ app, dir: pushedTree, sha: record.sha, docker: ctx.docker, log: log.write, signal }));
  } else if (!image) {
    if (!record.sha) throw new SlipwayError('invalid_job', 'job has neither a commit nor an image');
    await step('checkout');
    log.section(`checkout ${record.sha.slice(0, 12)}`);
    const tree = await checkout({ app, sha: record.sha, workdir: ctx.config.workdir, log: log.write, signal });
    try {
      throwIfCancelled();
      await step('build');
      log.section(`build slipway/${app.name}:${record.sha.slice(0, 12)}`);
      image = built(ctx, app.name, await buildImage({ app, dir: tree.dir, sha: record.sha, docker: ctx.docker, log: log.write, signal }));
    } finally {
      await tree.cleanup();
    }
  }
  throwIfCancelled();
  log.section(`rollout of ${image}`);
  const live = await rollout({
    app, nginx: ctx.config.nginx, dns: ctx.config.dns, image, sha: record.sha, job: record.id,
    docker: ctx.docker, etcd: ctx.etcd, log: log.write, signal,
    onStep: (s) => void step(s).catch(() => {}),
  });
  await steps.catch(() => {});
  ctx.feedback?.rolledOut(app.name, live);
  return { image, release: record.id };
}

/** The built image's name, after telling the feedback how much came from the cache. */
function built(ctx: DeployContext, app: string, image: BuiltImage): string {
  ctx.feedback?.built(app, image);
  return image.image;
}

async function settleFailure(ctx: DeployContext, job: Job, record: JobRecord, log: JobLog, err: unknown, signal: AbortSignal): Promise<unknown> {
  const id = record.id;
  const message = firstLine(err);
  if ((isSlipwayError(err, 'cancelled') || signal.aborted) && !(err instanceof UnavailableError)) {
    log.write('cancelled: nothing of this deploy went live');
    await log.flush();
    ctx.feedback?.finished(await ctx.store.finish(id, 'cancelled', { error: 'cancelled by request' }));
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
  ctx.feedback?.finished(await ctx.store.finish(id, 'failed', { error: message }), err);
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
