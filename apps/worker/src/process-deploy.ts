import { randomUUID } from 'node:crypto';
import { realpath, rm } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DelayedError, UnrecoverableError, type Job, type Queue } from 'bullmq';
import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { Redis } from 'ioredis';
import { type Logger, scrubSecrets } from '@slipway/core/logger';
import type { SlipwayConfig } from '@slipway/config/types';
import type { DeployFeedback } from '@slipway/feedback/deploy-feedback';
import { rewindFrom, type JobStore } from '@slipway/queue/job-store';
import { faultOf, firstLine, isRetryable, isSlipwayError, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { appConfig } from '@slipway/config/load-config';
import { checkout } from '@slipway/build/checkout';
import { isAncestor, recentHistory, resolveRef } from '@slipway/build/resolve-ref';
import { buildImage, type BuiltImage } from '@slipway/build/build-image';
import { repositoryStepsBudget, runSteps, stepsForCommit } from '@slipway/build/steps';
import { configuredRepository, OWNER_NAME } from '@slipway/forges/forge-address';
import { currentRelease, type ReleaseRecord } from '@slipway/rollout/release-store';
import { removeStrayContainers, rollout } from '@slipway/rollout/rollout';
import { FINAL_STATES, type JobRecord, type Step, type TestStepRun } from '@slipway/queue/job-types';
import type { AppConfig, StepConfig } from '@slipway/config/types';
import { bullJobId } from '@slipway/queue/deploy-queue';
import { withRedis } from '@slipway/queue/redis';
import { AppLease, DEFAULT_LEASE_MS } from './app-lease.js';
import { JobLog } from './job-log.js';

/** Everything a deploy needs from outside, handed in explicitly (no globals, no env). */
export interface DeployContext {
  config: SlipwayConfig;
  store: JobStore;
  /** To promote an app's delayed jobs when its deploy ends. */
  queue: Queue;
  redis: Redis;
  /** The engine images are built on; with engine.type: docker also where they run. */
  docker: Docker;
  /** engine.type: swarm: the manager's client (engine.manager); releases run there as services. */
  manager?: Docker;
  etcd: Etcd3;
  logger: Logger;
  /** Every secret of the config (see configSecrets): scrubbed from job logs and errors. */
  secrets: readonly string[];
  /** Running jobs of this worker by id, for `slipway cancel`. */
  running: Map<string, AbortController>;
  /** How long an app's deploy lease lives without renewal. */
  leaseMs?: number;
  /** See {@link ETCD_WAIT_MS}. */
  etcdWaitMs?: number;
  /** Commit statuses, notifications and metrics; told of each job's start and end, never waited for. */
  feedback?: DeployFeedback;
}

/** How long a job waits before asking again for a busy app. */
export const BUSY_RETRY_MS = 1000;
/**
 * How long a job an earlier attempt started waits, without spending an
 * attempt, for etcd to say whether that attempt went live (asking again
 * every ETCD_ASK_AGAIN_MS, each ask itself retried for about 30 s), before
 * its attempts are spent on it.
 */
export const ETCD_WAIT_MS = 5 * 60_000;
const ETCD_ASK_AGAIN_MS = 10_000;

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
  const controller = new AbortController();
  const progress: Progress = { reachedSwitch: false, knownNotLive: false };
  // Held by this attempt (BullMQ's token for it), not by the job: a re-run of the job elsewhere waits for the
  // lease to lapse rather than sharing it, and this attempt's release never frees the app under that re-run.
  const lease = new AppLease(ctx.redis, ctx.store.keys.appLock(record.app), `${id}:${token ?? randomUUID()}`, ctx.leaseMs ?? DEFAULT_LEASE_MS, () => {
    logger.warn('lost the app lease; stopping at the next safe point');
    controller.abort(new TakenOver('lost its app lease (its worker was cut off from Redis)'));
  });
  if (!(await lease.acquire())) {
    // A cancel that came while this waiting job was briefly taken (it is, every BUSY_RETRY_MS) found it running and
    // left only the stop key: a job that never started ends here, not when its app frees, maybe hours later.
    // Only a job never started: one an earlier attempt started may have gone live, which the attempt that gets the app finds out.
    // And not while another attempt of this job holds the app (its queue lock lost before it recorded its start): that
    // attempt meets the cancel at its next safe point, or goes live past it, and records which.
    const holder = await lease.holderOf();
    if (record.startedAt === null && !holder?.startsWith(`${id}:`) && await ctx.redis.exists(ctx.store.keys.cancel(id))) {
      const ended = await ctx.store.finish(id, 'cancelled', { error: 'cancelled while waiting' });
      ctx.feedback?.finished(ended);
      logger.info('cancelled while waiting for its app');
      return { skipped: ended.state };
    }
    logger.debug({ holder }, 'app busy; waiting');
    await ctx.redis.set(ctx.store.keys.waitingForApp(id), '1', 'PX', BUSY_RETRY_MS * 5);
    await job.moveToDelayed(Date.now() + BUSY_RETRY_MS + Math.floor(Math.random() * 200), token);
    throw new DelayedError();
  }
  // It waits for its app no more: should it fail and wait out a retry's backoff, another job's end must not wake it.
  await ctx.redis.del(ctx.store.keys.waitingForApp(id)).catch(() => {});

  const log = await openLog(ctx, id);
  ctx.running.set(id, controller);
  // Attempts started, ours: BullMQ's attemptsMade counts failures only, so a run cut short by a dead worker would not show.
  const nextAttempt = async () => ((await ctx.store.get(id))?.attempts ?? 0) + 1;
  try {
    // Unknown (etcd unreadable): neither going on nor giving way is safe. Taken for superseded, a job that went live
    // would be recorded "not deployed" while it serves; going on without asking whether it is, an old commit's retry
    // could build and go live over the newer one deployed meanwhile, once etcd answers again. The attempt is retried.
    const wentLive = await liveFromEarlierAttempt(ctx, record).catch(async (err: unknown) => {
      if (await waitForEtcd(ctx, job, token, record, log, err)) throw new DelayedError();
      // Waited long enough: an attempt all the same, counted, as the log's "will retry (attempt n of m)" counts it.
      await ctx.store.update(id, { attempts: await nextAttempt() });
      log.write('etcd could not be read to learn whether an earlier attempt of this job went live: nothing is done until it can be (neither superseded nor built)');
      throw new UnavailableError('etcd', `etcd could not be read to learn whether an earlier attempt of job ${id} went live: ${firstLine(err)}`, { cause: err });
    });
    // Whatever came since (a newer push waiting, a cancel: from the switch on, a deploy is not cancelled), it is what is
    // live. On one engine it is recorded as it is, once the previous release's containers the dead attempt would have
    // drained and stopped are; a swarm's rollout takes up the live service where the dead attempt stopped.
    if (wentLive && !ctx.manager) {
      log.write(`an earlier attempt of this job went live (${wentLive.image}) and stopped before recording it: the job is recorded as completed, ${tidiedBeforeCompleted(ctx, record.app)}`);
      await removeLeftByDeadAttempt(ctx, record, log);
      return await complete(ctx, record, log, { image: wentLive.image, release: id }, logger, 'went live in an earlier attempt; recorded as completed');
    }
    progress.knownNotLive = wentLive === null;
    if (wentLive) log.write(`an earlier attempt of this job went live (${wentLive.image}) and stopped before its end: taken up where it stopped, with that image, not built again (a cancel or a newer job no longer applies)`);
    else {
      const gaveWay = await givesWay(ctx, record, log, logger, controller.signal);
      if (gaveWay) return gaveWay;
      if (await ctx.redis.exists(ctx.store.keys.cancel(id))) controller.abort();
    }

    const attempt = await nextAttempt();
    const started = await ctx.store.update(id, { state: 'active', attempts: attempt, startedAt: new Date().toISOString(), error: null });
    // Ended a moment ago (cancelled while waiting, after the check above): an ended job stays ended, and is not run.
    if (started.state !== 'active') return { skipped: started.state };
    ctx.feedback?.started(started, attempt);
    logger.info({ attempt }, 'deploy started');
    return await complete(ctx, record, log, await deploy(ctx, record, log, controller.signal, attempt, progress, wentLive), logger, 'deploy completed');
  } catch (err) {
    if (err instanceof DelayedError) throw err;
    return await settleFailure(ctx, job, token, record, log, err, controller.signal, progress);
  } finally {
    // Only this attempt's: an attempt that lost its hold may end after the same worker took the job again, and the
    // new attempt's controller is what a cancel must reach.
    if (ctx.running.get(id) === controller) ctx.running.delete(id);
    await log.flush();
    await lease.release();
    await dropSourceWhenDone(ctx, record);
    await promoteWaiting(ctx, record.app, id);
  }
}

/**
 * Whether the job gives way before anything runs: superseded by a newer
 * job (supersedingJob), or a push of a commit live already or older than
 * it (staleAgainstLive). Ends the record and returns the job's result then.
 */
async function givesWay(ctx: DeployContext, record: JobRecord, log: JobLog, logger: Logger, signal: AbortSignal): Promise<{ superseded: string | null; stale?: true } | null> {
  const id = record.id;
  const newer = await supersedingJob(ctx, record, signal);
  if (newer) {
    log.write(`superseded by job ${newer}: a newer push of ${record.app} replaces this one`);
    await log.flush();
    ctx.feedback?.finished(await ctx.store.finish(id, 'superseded', { supersededBy: newer }));
    logger.info({ by: newer }, 'superseded');
    return { superseded: newer };
  }
  const live = await staleAgainstLive(ctx, record, signal);
  if (live) {
    log.write(live.branchAt
      ? `a ${record.push?.forced ? 'forced ' : ''}push of ${record.sha} says ${record.app}'s branch moved back to it, but the branch is at ${live.branchAt}: not rolled back (slipway deploy --ref does that on purpose)`
      : `commit ${record.sha} is already live for ${record.app} (job ${live.liveJob ?? '?'}), older than what is, or one an operator rolled back from: a push does not undo either (a forced push, or slipway deploy --ref, does)`);
    await log.flush();
    ctx.feedback?.finished(await ctx.store.finish(id, 'superseded', { supersededBy: live.liveJob }));
    logger.info({ live: live.liveSha }, 'stale push; superseded by what is live');
    return { superseded: live.liveJob, stale: true };
  }
  return null;
}

/**
 * The release etcd names as live, when it is this job's and an earlier
 * attempt started the job: that attempt switched, and its worker stopped
 * (killed, cut off) before it recorded the end. Null otherwise. Throws
 * when etcd cannot be read: "not live" is not known then, and a job taken
 * for not live could be recorded superseded while it is what serves.
 */
async function liveFromEarlierAttempt(ctx: DeployContext, record: JobRecord): Promise<ReleaseRecord | null> {
  if (record.startedAt === null) return null;
  const live = await currentRelease(ctx.etcd, record.app);
  // Answered: a later outage is waited out afresh.
  await ctx.redis.del(ctx.store.keys.etcdWait(record.id)).catch(() => {});
  return isOwnRelease(live, record) ? live : null;
}

/**
 * Whether etcd's live release is this job's: its id, and its commit (none
 * for an image deploy). A job id is a Redis counter's, and a Redis that lost its
 * data counts from 1 again: a new job may bear the id of the release that
 * is live, which it must not take for its own (and end completed while the
 * old commit serves).
 */
function isOwnRelease(live: ReleaseRecord | null | undefined, record: JobRecord): live is ReleaseRecord {
  return live?.job === record.id && live.sha === record.sha;
}

/**
 * Puts the job back in the queue for ETCD_ASK_AGAIN_MS, no attempt spent,
 * while etcd has not answered whether an earlier attempt of it went live
 * for less than `etcdWaitMs` (since the first ask it did not answer,
 * remembered in Redis). False once it has waited that long, or when the
 * job could not be put back: its attempts are spent then.
 */
async function waitForEtcd(ctx: DeployContext, job: Job, token: string | undefined, record: JobRecord, log: JobLog, err: unknown): Promise<boolean> {
  const waitMs = ctx.etcdWaitMs ?? ETCD_WAIT_MS;
  if (token === undefined || waitMs <= 0) return false;
  const key = ctx.store.keys.etcdWait(record.id);
  const now = Date.now();
  const first = (await ctx.redis.set(key, String(now), 'PX', waitMs * 2, 'NX')) !== null;
  const since = first ? now : Number(await ctx.redis.get(key));
  if (!(now - since < waitMs)) return false;
  if (first) {
    log.write(`etcd could not be read to learn whether an earlier attempt of this job went live (${scrubSecrets(firstLine(err), ctx.secrets)}): the job waits, asking again every ${ETCD_ASK_AGAIN_MS / 1000} s for up to ${Math.round(waitMs / 1000)} s, before it spends an attempt`);
  }
  if (!(await job.moveToDelayed(now + ETCD_ASK_AGAIN_MS, token).then(() => true, () => false))) return false;
  // Nothing runs it until then: it waits, as it says.
  await ctx.store.update(record.id, { state: 'waiting' }).catch(() => {});
  return true;
}

/**
 * A job BullMQ gave up on because its workers died once too often (its
 * stalls past maxStalledCount), which it runs no more: failed
 * (`worker_lost`), unless its last attempt went live before it died. Then
 * it is what serves, and is recorded completed as a take-up would record
 * it, once the previous release's containers are removed (one engine).
 */
export async function settleGivenUp(ctx: DeployContext, id: string, err: SlipwayError): Promise<void> {
  const record = await ctx.store.get(id);
  if (!record || FINAL_STATES.has(record.state)) return;
  const log = await openLog(ctx, id);
  // Under the app's lease, as a take-up: a newer job must not go live (and be remembered live) in between.
  const lease = new AppLease(ctx.redis, ctx.store.keys.appLock(record.app), `${id}:given-up:${randomUUID()}`, ctx.leaseMs ?? DEFAULT_LEASE_MS, () => {});
  const held = await waitForLease(lease, TIDY_LOCK_WAIT_MS);
  try {
    // Ended meanwhile, by another worker's give-up of it (its 'failed' handler, or the sweep for lost ones).
    if (FINAL_STATES.has((await ctx.store.get(id))?.state ?? 'completed')) return;
    // Unreadable (undefined), it is taken for not live: nothing runs the job again to find out later.
    const wentLive = await liveFromEarlierAttempt(ctx, record).catch(() => undefined);
    if (wentLive && held) {
      log.write(`this job is given up (its workers kept dying), but its last attempt went live (${wentLive.image}): it is recorded as completed, ${tidiedBeforeCompleted(ctx, record.app)}`);
      if (!ctx.manager) await removeLeftByDeadAttempt(ctx, record, log);
      await complete(ctx, record, log, { image: wentLive.image, release: id }, ctx.logger.child({ job: id, app: record.app }), 'given up after its workers died, but live; recorded as completed');
      return;
    }
    if (wentLive) {
      // Another deploy of the app held it all along, and goes live over this one: what this job did is over.
      log.write(`this job is given up (its workers kept dying); its last attempt went live (${wentLive.image}), and another deploy of ${record.app} now runs over it`);
      await log.flush();
      ctx.feedback?.finished(await ctx.store.finish(id, 'completed', { result: { image: wentLive.image, release: id } }));
      return;
    }
    // Not live (etcd said so), and an operator asked to cancel it while it was given up: that is how it ends.
    if (wentLive === null && await ctx.redis.exists(ctx.store.keys.cancel(id)).catch(() => 0)) {
      log.write('cancelled: this job was given up (its workers kept dying), and nothing of it went live');
      await log.flush();
      ctx.feedback?.finished(await ctx.store.finish(id, 'cancelled', { error: 'cancelled by request' }));
      return;
    }
    log.write(`error: ${err.message}`);
    await log.flush();
    ctx.feedback?.finished(await ctx.store.finish(id, 'failed', { error: err.message, fault: err.fault }), err);
  } finally {
    await log.flush();
    if (held) await lease.release();
  }
}

/** Asks for the lease every BUSY_RETRY_MS until it is had or `ms` have passed. */
async function waitForLease(lease: AppLease, ms: number): Promise<boolean> {
  for (const deadline = Date.now() + ms; ;) {
    if (await lease.acquire().catch(() => false)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(BUSY_RETRY_MS);
  }
}

/** The job's log, bounded as the configuration says. */
function openLog(ctx: DeployContext, id: string): Promise<JobLog> {
  return JobLog.open(ctx.store, id, { secrets: ctx.secrets, maxLines: ctx.config.jobs.log_max_lines, maxBytes: ctx.config.jobs.log_max_bytes });
}

/** What happens to what served before a job that went live but did not finish, before it is recorded completed. */
function tidiedBeforeCompleted(ctx: DeployContext, app: string): string {
  return ctx.manager
    ? `what served before it left to ${app}'s next rollout`
    : 'after nginx is brought to etcd\'s set and the previous release\'s containers removed (as far as they can be)';
}

/** How long the tidying of a dead attempt waits for the app's rollout lock. */
const TIDY_LOCK_WAIT_MS = 60_000;

/**
 * On one engine, what an attempt that went live and died left: the previous
 * release's containers, drained (when they carry connections) and removed
 * under the app's lock. A failure is said, not thrown: the job is live
 * whatever happens here, and the app's next rollout removes them.
 */
async function removeLeftByDeadAttempt(ctx: DeployContext, record: JobRecord, log: JobLog): Promise<void> {
  try {
    const removed = await removeStrayContainers({
      app: appConfig(ctx.config, record.app), nginx: { ...ctx.config.nginx, batchMs: ctx.config.router.batch_ms }, dns: ctx.config.dns,
      docker: ctx.docker, etcd: ctx.etcd, job: record.id, log: log.write, lockWaitMs: TIDY_LOCK_WAIT_MS,
    });
    if (removed.length === 0) log.write('nothing of the previous release was left running');
  } catch (err) {
    // etcd is what says what is live: the job is still recorded as what it names. nginx may not route to it yet.
    log.write(`could not finish tidying what that attempt left (${firstLine(err)}): if nginx was not brought to what etcd names live, it may still route to the previous release until \`slipway router\` syncs it or ${record.app}'s next rollout, which also removes what is left`);
  }
}

/** The job's end once what it deploys is live: remembered as live (so later pushes of older commits are stale), recorded completed. */
async function complete<R extends NonNullable<JobRecord['result']>>(ctx: DeployContext, record: JobRecord, log: JobLog, result: R, logger: Logger, message: string): Promise<R> {
  await rememberLive(ctx, record, log.write);
  await log.flush();
  await ctx.store.step(record.id, 'done');
  ctx.feedback?.finished(await ctx.store.finish(record.id, 'completed', { result }));
  logger.info({ image: result.image }, message);
  return result;
}

/**
 * The job that makes this one pointless to deploy (JobStore.supersededBy),
 * passing over a forced push whose word is not borne out: `forced` is the
 * payload's, so a holder of the secret could otherwise queue a fake one
 * behind a real push, replace it, and then end stale itself (see
 * staleAgainstLive), leaving neither deployed. A forced push replaces this
 * job only when the branch, fetched now (once, and only then), is at its
 * commit, or once it has gone live.
 */
async function supersedingJob(ctx: DeployContext, record: JobRecord, signal: AbortSignal): Promise<string | null> {
  const passOver = new Set<string>();
  let branchAt: string | undefined;
  for (;;) {
    const newer = await ctx.store.supersededBy(record.app, record.id, passOver);
    const job = newer === null ? null : await ctx.store.get(newer);
    if (newer === null || job?.trigger !== 'webhook' || !job.push?.forced || !job.sha || job.state === 'completed') return newer;
    if (branchAt === undefined) {
      const app = appForJob(ctx, job);
      branchAt = await resolveRef({ app, ref: job.ref ?? app.branch, workdir: ctx.config.workdir, signal });
    }
    if (branchAt === job.sha) return newer;
    passOver.add(newer);
  }
}

/**
 * A webhook's push of the commit that is live, or of one older than it,
 * whose job was queued before that release went live (the receiver turns
 * later ones away): it is not deployed over what is live. Operator jobs
 * (CLI, retry, rollback) are never stale. A forced push may roll back, but
 * `forced` is only the payload's word: one that would is taken only when
 * the branch, fetched now, is at its commit (`branchAt` says where it is
 * otherwise), so holding the secret does not let a sender roll an app back.
 */
async function staleAgainstLive(ctx: DeployContext, record: JobRecord, signal: AbortSignal) {
  if (record.trigger !== 'webhook' || !record.sha) return null;
  const live = await ctx.store.staleFor(record.app, record.sha);
  // The remembered ancestry is the live commit's newest LIVE_HISTORY (or only the live commit, when its history could
  // not be read): a commit older than that, a replayed body of a push long past, is asked of the clone cache.
  if (!live.stale && live.liveSha && await behindLive(ctx, record, live.liveSha, signal)) live.stale = true;
  if (!live.stale) return null;
  if (!record.push?.forced && !(await movedBack(ctx, record, live.back, signal))) return { ...live, branchAt: null };
  const app = appForJob(ctx, record);
  const head = await resolveRef({ app, ref: record.ref ?? app.branch, workdir: ctx.config.workdir, signal });
  return head === record.sha ? null : { ...live, branchAt: head };
}

/**
 * Whether a push not called forced (Gitea, GitLab: see rewindFrom) moved the branch back all the same: its
 * `before` is no ancestor of its commit in the clone cache, which no
 * fast-forward does (the job store finds the same within the live
 * ancestry: rewindFrom). Such a push is then taken as a forced one is:
 * only when the branch is at its commit. Never after an operator went back
 * (`back`): the commits gone back from are still the branch's.
 */
async function movedBack(ctx: DeployContext, record: JobRecord, back: boolean, signal: AbortSignal): Promise<boolean> {
  const before = rewindFrom(record);
  if (back || !before || before === record.sha) return false;
  try {
    return !(await isAncestor({ app: appForJob(ctx, record), sha: before, of: record.sha!, workdir: ctx.config.workdir, signal }));
  } catch (err) {
    ctx.logger.warn({ job: record.id, err: firstLine(err) }, 'could not ask the clone cache whether the push moved the branch back');
    return false;
  }
}

/**
 * Whether the job's commit is the live one's ancestor in the clone cache's
 * whole history; false when the cache cannot say. Waits for the cache as
 * the checkout would (another process's long fetch): answering "not
 * stale" for want of waiting would let an old commit through.
 */
async function behindLive(ctx: DeployContext, record: JobRecord, liveSha: string, signal: AbortSignal): Promise<boolean> {
  try {
    return await isAncestor({ app: appForJob(ctx, record), sha: record.sha!, of: liveSha, workdir: ctx.config.workdir, signal });
  } catch (err) {
    ctx.logger.warn({ job: record.id, err: firstLine(err) }, 'could not ask the clone cache whether the commit is older than the live one');
    return false;
  }
}

/** Jobs an operator asked for, the branch unmoved: see JobStore.recordLive. */
const OPERATOR_TRIGGERS: ReadonlySet<JobRecord['trigger']> = new Set(['rollback', 'cli', 'retry']);

/** Attempts at recording what went live, RECORD_LIVE_PAUSE_MS apart. */
const RECORD_LIVE_ATTEMPTS = 4;
const RECORD_LIVE_PAUSE_MS = 1000;

/**
 * What just went live, and the commit's recent history, so later pushes of
 * older commits are known stale. The release is live whatever happens
 * here, so a failure does not fail the job: it is tried a few times, then
 * said in the job's log and the worker's (the record is one transaction:
 * the guard keeps knowing the previous live commit and its ancestors, and
 * superseding by push still orders the app's queued pushes).
 */
async function rememberLive(ctx: DeployContext, record: JobRecord, write: (line: string) => void): Promise<void> {
  let history: string[] = [];
  if (record.sha) {
    // The clone cache's key is the app; an owner/name app's address needs the job's forge (history is only read).
    const app = (() => { try { return appForJob(ctx, record); } catch { return appConfig(ctx.config, record.app); } })();
    history = await recentHistory({ app, sha: record.sha, workdir: ctx.config.workdir }).catch((err: unknown) => {
      write(`warning: could not read the history of ${record.sha!.slice(0, 12)} from the clone cache (${firstLine(err)}): a late push of one of its ancestors is not known stale until the app's next deploy`);
      ctx.logger.warn({ job: record.id, err: firstLine(err) }, 'could not read the live commit\'s history');
      return [] as string[];
    });
  }
  for (let attempt = 1; ; attempt++) {
    try {
      await ctx.store.recordLive(record.app, { sha: record.sha, job: record.id }, history, { operator: OPERATOR_TRIGGERS.has(record.trigger) });
      return;
    } catch (err) {
      if (attempt >= RECORD_LIVE_ATTEMPTS) {
        write(`warning: could not record ${record.sha?.slice(0, 12) ?? record.image} as live for ${record.app} (${firstLine(err)}): until the app's next deploy, a late push of it or of a commit since the previous live one is not known stale`);
        ctx.logger.warn({ job: record.id, err: firstLine(err) }, 'could not record what went live');
        return;
      }
      await sleep(RECORD_LIVE_PAUSE_MS);
    }
  }
}

/**
 * The tree `git push` to a Slipway remote exported for this job, or null
 * when it is gone. Only a directory inside `<workdir>/incoming` (symlinks
 * resolved) is one: the worker builds from it and deletes it afterwards, so
 * a job record naming anything else is refused (`invalid_job`) and the
 * directory left alone.
 */
async function pushedTreeOf(ctx: DeployContext, record: JobRecord): Promise<string | null> {
  if (!record.sourceDir) return null;
  const incoming = await realpath(join(ctx.config.workdir, 'incoming')).catch(() => null);
  const tree = await realpath(record.sourceDir).catch(() => null);
  if (tree === null) return null;
  if (incoming === null || !tree.startsWith(`${incoming}${sep}`)) {
    throw new SlipwayError('invalid_job', `job ${record.id} names a source directory outside ${join(ctx.config.workdir, 'incoming')}; refused`);
  }
  return tree;
}

/** A pushed tree is kept while its job may still run, and removed once it has ended (only ever one under incoming/). */
async function dropSourceWhenDone(ctx: DeployContext, record: JobRecord): Promise<void> {
  const tree = await pushedTreeOf(ctx, record).catch(() => null);
  if (!tree) return;
  const now = await ctx.store.get(record.id).catch(() => null);
  if (now && FINAL_STATES.has(now.state)) await rm(tree, { recursive: true, force: true }).catch(() => {});
}

/**
 * The app as a deploy of this job must see it. An `owner/name` repo is
 * cloned from the forge the configuration names for the provider the push
 * came from (`forges.<provider>.api_url`, or github.com / gitlab.com), never
 * from an address in the webhook: a signed payload does not choose what
 * Slipway clones (with the app's credentials).
 */
function appForJob(ctx: DeployContext, record: JobRecord) {
  const app = appConfig(ctx.config, record.app);
  if (!OWNER_NAME.test(app.repo)) return app;
  const provider = record.push && record.push.provider !== 'git' ? record.push.provider : null;
  const repo = configuredRepository(app, provider, ctx.config.forges);
  if (!repo) {
    throw new SlipwayError('invalid_job', `${app.name}'s repo is ${app.repo}, which names no forge to clone from for ${provider ? `a ${provider} push (set forges.${provider}.api_url)` : `job ${record.id}, which came from no forge`}; or set repo to a clone URL`);
  }
  return { ...app, repo: repo.cloneUrl };
}

/** How far an attempt got: from its switch on, a cancel is no longer what stopped it (the rollout ignores one then). */
interface Progress {
  reachedSwitch: boolean;
  /** etcd said no earlier attempt of the job went live: before this attempt's switch, nothing of it serves. */
  knownNotLive: boolean;
}

/**
 * Builds, tests and rolls out the job's commit (or rolls out its image).
 * A job whose earlier attempt went live on a swarm (`wentLive`) is rolled
 * out from where that attempt stopped, with the image that went live: it
 * was built, tested and published then, and a build now (on another host,
 * without its cache) would be other bits under the same tag; and from its
 * switch on, a cancel no longer applies to it.
 */
async function deploy(ctx: DeployContext, record: JobRecord, log: JobLog, signal: AbortSignal, attempt: number, progress: Progress, wentLive: ReleaseRecord | null): Promise<NonNullable<JobRecord['result']>> {
  // Where to clone from matters only to a build: a rollback or an image deploy of an owner/name app runs whatever its job.
  const app = wentLive || record.image ? appConfig(ctx.config, record.app) : appForJob(ctx, record);
  const updates = recordUpdates(ctx.store, record.id);
  log.write(`job ${record.id} (${record.trigger}) for ${record.app}, attempt ${attempt}${record.sha ? `, commit ${record.sha}` : ''}${record.image ? `, image ${record.image}` : ''}`);
  let image: string;
  if (wentLive) {
    progress.reachedSwitch = true;
    image = wentLive.image;
    signal = unlessCancelled(signal);
  } else {
    image = await buildAndTest(ctx, app, record, log, signal, updates);
  }
  log.section(`rollout of ${image}`);
  const builtHere = !wentLive && !record.image;
  const live = await rollout({
    app, nginx: { ...ctx.config.nginx, batchMs: ctx.config.router.batch_ms }, dns: ctx.config.dns, image, sha: record.sha, job: record.id,
    // Asked when the rollout prunes: a rollback queued while it runs names an image it must not remove.
    keepImages: () => imagesStillToRun(ctx, record),
    docker: ctx.docker, etcd: ctx.etcd, log: log.write, signal, engine: ctx.config.engine, manager: ctx.manager,
    onStep: (s) => void updates.step(s).catch(() => {}),
    // Not at the step `switch`, which begins with nginx's check of the candidate: a cancel during that check, which
    // then fails, cancelled the job; nothing of it went live.
    onSwitching: () => (progress.reachedSwitch = true),
  }).catch((err: unknown) => {
    // Built a moment ago, gone now: another rollout of the app, ending while this one waited for the app (it had lost
    // its lease), pruned the images it knew of no release for. Not the commit's doing: built again on a retry.
    if (builtHere && isSlipwayError(err, 'image_not_found')) {
      throw new UnavailableError('docker', `the image ${image} built for this job was gone from the Docker engine when its containers were to start (removed meanwhile, as another rollout of ${app.name} pruned old images): it is built again when the job is retried`, { cause: err });
    }
    throw err;
  });
  await updates.settled();
  ctx.feedback?.rolledOut(app.name, live);
  // Kept with the job: a drain that ran out of drain_s is shown wherever the job is, not only in its log.
  return { image, release: record.id, ...(live.drain ? { drain: { ms: live.drain.ms, open: live.drain.open } } : {}) };
}

/**
 * A job record's updates, one at a time: each step is a read-modify-write
 * of the timeline, and the rollout reports its steps without waiting (a
 * first release's `switch` and `drain` come a moment apart). `inOrder`
 * resolves when its update (and all before it) is done; `settled` when
 * every one so far is, whether it failed or not.
 */
function recordUpdates(store: JobStore, id: string) {
  let chain: Promise<void> = Promise.resolve();
  const inOrder = (update: () => Promise<unknown>): Promise<void> => (chain = chain.catch(() => {}).then(async () => void (await update())));
  return { inOrder, step: (s: Step) => inOrder(() => store.step(id, s)), settled: () => chain.catch(() => {}) };
}
type RecordUpdates = ReturnType<typeof recordUpdates>;

/**
 * The job's image: its commit checked out (or its pushed tree) and built,
 * then its test steps run in it; or the image the job names. Throws
 * `cancelled` once `signal` is aborted between two of these, or after.
 */
async function buildAndTest(ctx: DeployContext, app: AppConfig, record: JobRecord, log: JobLog, signal: AbortSignal, updates: RecordUpdates): Promise<string> {
  const throwIfCancelled = () => {
    if (signal.aborted) throw new SlipwayError('cancelled', 'cancelled by request');
  };
  throwIfCancelled();
  let image = record.image;
  // A built commit's test steps (the config's, else its .slipway.yml's), known before the build so a bad file fails at once. Image deploys run none.
  let tests: StepConfig[] = [];
  const pushedTree = await pushedTreeOf(ctx, record);
  if (record.sourceDir && !pushedTree) log.write(`the pushed tree of this job is gone (the push was refused); checking out ${record.sha?.slice(0, 12)} instead`);
  if (!image && pushedTree && record.sha) {
    tests = await stepsForCommit(app, pushedTree, record.sha, log.write);
    await updates.step('build');
    log.section(`build slipway/${app.name}:${record.sha.slice(0, 12)} from the pushed tree`);
    image = built(ctx, app.name, await buildImage({ app, dir: pushedTree, sha: record.sha, docker: ctx.docker, log: log.write, signal }));
  } else if (!image) {
    if (!record.sha) throw new SlipwayError('invalid_job', 'job has neither a commit nor an image');
    await updates.step('checkout');
    log.section(`checkout ${record.sha.slice(0, 12)}`);
    const tree = await checkout({ app, sha: record.sha, branch: app.branch, workdir: ctx.config.workdir, log: log.write, signal, timeoutMs: app.build_timeout_s * 1000 });
    try {
      tests = await stepsForCommit(app, tree.dir, record.sha, log.write);
      throwIfCancelled();
      await updates.step('build');
      log.section(`build slipway/${app.name}:${record.sha.slice(0, 12)}`);
      image = built(ctx, app.name, await buildImage({ app, dir: tree.dir, sha: record.sha, docker: ctx.docker, log: log.write, signal }));
    } finally {
      await tree.cleanup();
    }
  }
  throwIfCancelled();
  if (tests.length > 0) {
    await updates.step('test');
    log.section(`test ${image}: ${tests.map((t) => t.name).join(', ')}`);
    const runs: TestStepRun[] = [];
    await runSteps({
      // On the worker's own engine, where the image was just built, whatever engine the rollout then uses.
      docker: ctx.docker, app: app.name, steps: tests, builtImage: image, job: record.id, sha: record.sha, log: log.write, signal,
      resources: app.resources, totalTimeoutS: repositoryStepsBudget(app),
      onRun: (run) => {
        const at = runs.findIndex((r) => r.name === run.name);
        if (at < 0) runs.push(run);
        else runs[at] = run;
        const snapshot = [...runs];
        void updates.inOrder(() => ctx.store.update(record.id, { tests: snapshot })).catch(() => {});
      },
    }).finally(() => updates.settled());
  }
  throwIfCancelled();
  return image;
}

/**
 * What a job live already is rolled out with: aborted when the attempt
 * loses its hold on the job (another attempt runs it), not by a cancel,
 * which no longer applies to it.
 */
function unlessCancelled(signal: AbortSignal): AbortSignal {
  const controller = new AbortController();
  const follow = () => {
    if (signal.reason instanceof TakenOver) controller.abort(signal.reason);
  };
  if (signal.aborted) follow();
  else signal.addEventListener('abort', follow, { once: true });
  return controller.signal;
}

/**
 * The images the app's other jobs still to run name (a rollback or an image
 * deploy queued behind this one): the rollout must not prune them. None
 * when Redis cannot say: the rollout then prunes as it would have.
 */
async function imagesStillToRun(ctx: DeployContext, record: JobRecord): Promise<string[] | null> {
  try {
    // Bounded: asked under the app's lock, after the switch, through a client that waits out an outage for ever.
    const jobs = await withRedis(ctx.store.redis, async () => ctx.store.records((await ctx.store.waitingIds(record.app)).filter((id) => id !== record.id)));
    return jobs.flatMap((job) => (job.image ? [job.image] : []));
  } catch {
    // Not known: nothing is pruned this time, rather than the image of a rollback waiting its turn.
    return null;
  }
}

/** The built image's name, after telling the feedback how much came from the cache. */
function built(ctx: DeployContext, app: string, image: BuiltImage): string {
  ctx.feedback?.built(app, image);
  return image.image;
}

/**
 * Why an attempt stopped though nobody cancelled the job: it lost its hold
 * on it (BullMQ's lock, or the app lease), so another attempt runs it.
 */
export class TakenOver extends Error {}

async function settleFailure(ctx: DeployContext, job: Job, token: string | undefined, record: JobRecord, log: JobLog, err: unknown, signal: AbortSignal, progress: Progress): Promise<unknown> {
  const id = record.id;
  // The one free-text field of a job: shown in lists, the dashboard, commit statuses and notifications.
  const message = scrubSecrets(firstLine(err), ctx.secrets);
  if (signal.reason instanceof TakenOver) {
    // Another attempt runs the job now (or will): the record and the outcome are its to write.
    log.write(`stopped: this attempt ${signal.reason.message}; the job runs again, and its record is that run's`);
    await log.flush();
    // While BullMQ's lock is still this attempt's (only the app lease went), the job would end completed, never run:
    // it goes back in the queue, to take the app again. Without that lock, BullMQ hands the job out again itself.
    if (token !== undefined && (await job.moveToDelayed(Date.now() + BUSY_RETRY_MS, token).then(() => true, () => false))) {
      // Nothing runs it until then: it waits, as it says.
      await ctx.store.update(id, { state: 'waiting' }).catch(() => {});
      throw new DelayedError();
    }
    return { takenOver: true };
  }
  // Before the switch, whatever fails once the job was cancelled failed because of it (a build killed, a container
  // stopped): retryable or not once etcd said no earlier attempt went live (a retry would only meet the cancel, or on
  // the last attempt record the kill as the job's failure); else only a failure that is not retried, since the retry
  // finds out whether the job serves. From the switch on the rollout ignores the cancel, so a failure there is the
  // deploy's own and says so.
  if (isSlipwayError(err, 'cancelled') || (signal.aborted && !progress.reachedSwitch && (progress.knownNotLive || !isRetryable(err)))) {
    log.write('cancelled: nothing of this deploy went live');
    await log.flush();
    ctx.feedback?.finished(await ctx.store.finish(id, 'cancelled', { error: 'cancelled by request' }));
    return { cancelled: true };
  }
  const attempts = job.opts.attempts ?? 1;
  const retryable = isRetryable(err);
  log.write(`error: ${err instanceof Error ? err.message : String(err)}`);
  if (retryable && job.attemptsMade + 1 < attempts) {
    const delay = (job.opts.backoff as { delay?: number } | undefined)?.delay ?? 0;
    log.write(`will retry (attempt ${job.attemptsMade + 2} of ${attempts}) in about ${Math.max(1, Math.round((delay * 2 ** job.attemptsMade) / 1000))} s`);
    await log.flush();
    await ctx.store.update(id, { state: 'waiting', error: message });
    throw new Error(message);
  }
  // Past the switch, etcd may name this job's release though the rollout failed after it (the switch's answer lost,
  // nginx's apply failed and could not be undone): that is what is live, and what a retry would have found.
  if (progress.reachedSwitch) {
    const live = await currentRelease(ctx.etcd, record.app).catch(() => undefined);
    if (isOwnRelease(live, record)) {
      log.write(`the rollout failed after its switch, and etcd names this job's release as live (${live.image}): it is recorded as completed, ${tidiedBeforeCompleted(ctx, record.app)}`);
      // As for an earlier attempt that went live and died: nginx brought to etcd's set first, then the previous containers.
      if (!ctx.manager) await removeLeftByDeadAttempt(ctx, record, log);
      return complete(ctx, record, log, { image: live.image, release: id }, ctx.logger.child({ job: id, app: record.app }), 'live though its rollout failed after the switch; recorded as completed');
    }
    if (live === undefined) log.write('etcd could not be read to learn whether the switch went through: the job is recorded as failed');
  }
  await log.flush();
  ctx.feedback?.finished(await ctx.store.finish(id, 'failed', { error: message, fault: faultOf(err) }), err);
  // BullMQ keeps the reason in its own job data too: the scrubbed line, never the original message.
  if (retryable) throw new Error(message);
  throw new UnrecoverableError(message);
}

/** Wakes the app's jobs that were told to wait while it was busy; never one waiting out a retry's backoff. */
async function promoteWaiting(ctx: DeployContext, app: string, self: string): Promise<void> {
  for (const id of await ctx.store.waitingIds(app).catch(() => [] as string[])) {
    if (id === self || !(await ctx.redis.exists(ctx.store.keys.waitingForApp(id)).catch(() => 0))) continue;
    const job = await ctx.queue.getJob(bullJobId(id)).catch(() => undefined);
    if (job && (await job.getState().catch(() => '')) === 'delayed') await job.promote().catch(() => {});
  }
}
