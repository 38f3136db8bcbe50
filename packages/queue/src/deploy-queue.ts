import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { isSlipwayError, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { FINAL_STATES, type DeployRequest, type JobRecord } from './job-types.js';
import { JobStore, type CreatedGroup, type JobGroup } from './job-store.js';
import { withRedis } from './redis.js';

/** The BullMQ queue deploy jobs go through; the worker takes them from it. */
export const QUEUE_NAME = 'deploys';
/** BullMQ job ids must not be bare integers; ours are, so they get a prefix. */
export const bullJobId = (id: string) => `deploy-${id}`;
/** BullMQ's reason for a job it failed because it stalled more than maxStalledCount: given up, its record still to end. */
export const STALLED_OUT = 'job stalled more than allowable limit';

/** Most webhooks whose records are written by one script call (a Lua script holds Redis while it runs). */
const ENQUEUE_BATCH = 64;

interface PendingEnqueue {
  group: JobGroup;
  resolve: (created: CreatedGroup) => void;
  reject: (err: unknown) => void;
}

export interface DeployQueueOptions {
  /** A `producer` connection from connectRedis: commands fail fast while Redis is away. */
  redis: Redis;
  /** Prefix of every key (`queue.prefix` in slipway.yml). */
  prefix: string;
  /** Attempts for a job failing on an unreachable dependency. Default 5. */
  attempts?: number;
  /** First retry delay in ms, doubled each attempt. Default 2000. */
  backoffMs?: number;
}

/** A waiting record this old with no BullMQ job was orphaned (see DeployQueue.repairOrphans). */
export const ORPHAN_AGE_MS = 2 * 60_000;

/** How long one enqueue's claim is kept: far longer than ioredis takes to send a script again after reconnecting. */
const REQUEST_CLAIM_TTL_S = 600;
/**
 * How long an operator's enqueue waits for Redis. Its write is not undone
 * when the wait ends: a slow Redis that answers later has queued the job,
 * which a 3 s wait would have reported failed (and a second try queued
 * twice). An operator can wait this long; past it, the message says so.
 */
export const OPERATOR_ENQUEUE_TIMEOUT_MS = 30_000;

/** How long a retry's claim on its job lasts at most (it is released as soon as the re-run is queued). */
const RETRY_CLAIM_MS = 30_000;

/** BullMQ states of a job that is queued, running or ran: not one whose adding failed half-way. */
const QUEUED_STATES: ReadonlySet<string> = new Set(['waiting', 'delayed', 'prioritized', 'active', 'waiting-children', 'completed', 'failed']);

/**
 * The producer side of the deploy queue: enqueue, cancel, retry, and the
 * delivery-id memory of the receiver. A job's record is written before its
 * BullMQ job, so a worker never takes a job it cannot find.
 */
export class DeployQueue {
  readonly store: JobStore;
  readonly bull: Queue;
  private readonly attempts: number;
  private readonly backoffMs: number;
  /** enqueueMany calls of this turn of the event loop, written together by the next flush. */
  private pending: PendingEnqueue[] = [];
  /** enqueueMany calls sent to Redis and not answered yet (their callers may have given up on them). */
  private sent = 0;

  constructor(private readonly options: DeployQueueOptions) {
    // Retention is the worker's, which knows jobs.keep_*: jobs this one ends are trimmed at the next job the worker finishes.
    this.store = new JobStore(options.redis, options.prefix, { retention: null });
    this.bull = new Queue(QUEUE_NAME, { connection: options.redis, prefix: options.prefix });
    this.bull.on('error', () => {});
    this.attempts = options.attempts ?? 5;
    this.backoffMs = options.backoffMs ?? 2000;
  }

  get redis(): Redis {
    return this.options.redis;
  }

  /**
   * enqueueMany calls Redis has not answered yet, including those their
   * callers stopped waiting for: each holds its records in memory until it
   * is answered, so a receiver refuses more while Redis hangs.
   */
  get unanswered(): number {
    return this.sent + this.pending.length;
  }

  /**
   * Queues one job (a CLI deploy, a rollback, a retry, a git push) under a
   * one-time claim: should ioredis send the script again after a reconnect
   * (its first answer lost, the records written), the second run finds
   * the claim and answers with the first run's job, putting its BullMQ job
   * in, instead of making a second record.
   */
  async enqueue(request: DeployRequest): Promise<JobRecord> {
    const { records, previous } = await this.enqueueMany([request], { provider: 'request', id: randomUUID(), ttlSeconds: REQUEST_CLAIM_TTL_S }, { timeoutMs: OPERATOR_ENQUEUE_TIMEOUT_MS })
      .catch((err: unknown) => {
        if (!(err instanceof UnavailableError) || !/did not answer/.test(err.message)) throw err;
        throw new UnavailableError('redis', `${err.message}: the job may be queued still, once it answers (slipway jobs --app ${request.app} shows it)`, { cause: err });
      });
    if (records[0]) return records[0];
    const first = (JSON.parse(previous ?? '[]') as Array<{ job: string }>)[0];
    const record = first ? await withRedis(this.redis, () => this.store.get(first.job)) : null;
    if (!record) throw new Error(`the job was queued (${first?.job ?? 'no id answered'}) but its record cannot be read back`);
    return record;
  }

  /**
   * Queues several jobs at once; with `delivery`, once per forge delivery
   * id: a redelivery within `ttlSeconds` queues nothing and `previous` says
   * what the first one queued (`[{"job","app"}…]`). With `guard` (a
   * webhook's push), a job whose commit is live or older than the live
   * release, or that a webhook queued already, is not created but listed
   * in `skipped` (see JobGroup.guard). Records, delivery claim
   * and what it queued are written in one round trip before the BullMQ
   * jobs, so a worker never takes a job it cannot find and a redelivery
   * arriving meanwhile is still a duplicate. If queuing fails, the records
   * end failed and the claim is dropped, so the forge's retry is honoured.
   *
   * Calls made in the same turn of the event loop (webhooks arriving
   * together) share that round trip: one script for all their records, in
   * call order, at most {@link ENQUEUE_BATCH} at a time.
   */
  enqueueMany(requests: readonly DeployRequest[], delivery?: { provider: string; id: string; ttlSeconds: number; guard?: boolean }, options: { timeoutMs?: number } = {}): Promise<CreatedGroup> {
    return withRedis(this.redis, () => new Promise((resolve, reject) => {
      const key = delivery ? this.store.keys.delivery(delivery.provider, delivery.id) : undefined;
      this.pending.push({ group: { requests, delivery: key ? { key, ttlSeconds: delivery!.ttlSeconds } : undefined, guard: delivery?.guard }, resolve, reject });
      if (this.pending.length === 1) setImmediate(() => this.flushPending());
    }), options.timeoutMs);
  }

  private flushPending(): void {
    const pending = this.pending;
    this.pending = [];
    for (let i = 0; i < pending.length; i += ENQUEUE_BATCH) void this.enqueueBatch(pending.slice(i, i + ENQUEUE_BATCH));
  }

  private async enqueueBatch(batch: readonly PendingEnqueue[]): Promise<void> {
    this.sent += batch.length;
    try {
      await this.writeBatch(batch);
    } finally {
      this.sent -= batch.length;
    }
  }

  private async writeBatch(batch: readonly PendingEnqueue[]): Promise<void> {
    let created: CreatedGroup[];
    try {
      created = await this.store.createGroups(batch.map((p) => p.group));
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    // The BullMQ jobs of the whole batch in one addBulk (one pipeline, one write), not one add
    // per job with a promise chain each. Should it fail (Redis went away), every group of the
    // batch is undone: claims dropped so the forges' retries are honoured, records ended
    // failed. A BullMQ job that did get in is then skipped by the worker (its record is final).
    // A duplicate's jobs not started yet go in again: their first delivery's BullMQ jobs may never have been added
    // (its answer lost; see CreatedGroup.stillWaiting). The same job id, so BullMQ adds nothing when they are there.
    const records = created.flatMap((c) => c.records);
    const ids = [...new Set([...records.map((record) => record.id), ...created.flatMap((c) => c.stillWaiting)])];
    try {
      if (ids.length > 0) await this.bull.addBulk(ids.map((id) => ({ name: 'deploy', data: { id }, opts: this.jobOptions(id) })));
    } catch (err) {
      // Undone before anyone is answered: a 503 means the forge's retry will be queued, and the records say why they never ran.
      // Each record is ended first, and only then what would make a retry a "duplicate" of it goes: the commit's pushed
      // mark (only while it names this job), and the group's claim once all its records ended (only the claims this
      // batch made: a duplicate's claim is its first delivery's, whose jobs stand). Should Redis refuse the ending (out
      // of memory), the record stays waiting with its claim: the push's one job, queued again by the retry or the repair.
      // A record whose BullMQ job is queued after all (a redelivery's batch added it meanwhile) is not undone: it runs.
      const undone = new Set<string>();
      for (const record of records) {
        if (await this.isQueued(record.id)) continue;
        const ended = await this.store.finish(record.id, 'failed', { error: 'could not be queued' }).catch(() => null);
        if (ended?.state !== 'failed') continue;
        undone.add(record.id);
        await this.store.forgetPushed(record).catch(() => {});
      }
      for (const [g, { group }] of batch.entries()) {
        const mine = created[g]!.records;
        if (group.delivery && mine.length > 0 && mine.every((r) => undone.has(r.id))) await this.redis.del(group.delivery.key).catch(() => {});
      }
      for (const { reject } of batch) reject(err);
      return;
    }
    batch.forEach(({ resolve }, g) => resolve(created[g]!));
  }

  /** Whether the BullMQ job of record `id` is in the queue (or was run); false when unknown, or Redis cannot say. */
  private async isQueued(id: string): Promise<boolean> {
    try {
      const job = await this.bull.getJob(bullJobId(id));
      return job !== undefined && QUEUED_STATES.has(await job.getState());
    } catch {
      return false;
    }
  }

  /**
   * Waiting records with no BullMQ job, left when Redis went away (or the
   * process died) between a batch's records and its BullMQ jobs, before
   * the undo could run. A webhook's job is queued now: its delivery is
   * claimed, so it is the push's only job; a redelivery of it puts the
   * BullMQ job back too (see CreatedGroup.stillWaiting), this covers a
   * forge that sends none (the same job id, so a second repair adds nothing).
   * Any other (a CLI deploy told it failed) is ended failed. Only records
   * older than `olderThanMs` are looked at: a younger one's enqueue may
   * still be on its way. One whose cancel removed its BullMQ job and could
   * not then end its record is ended cancelled. Returns the ids requeued,
   * failed and cancelled.
   */
  async repairOrphans(options: { olderThanMs?: number; limit?: number; app?: string } = {}): Promise<{ requeued: string[]; failed: string[]; cancelled: string[] }> {
    const before = Date.now() - (options.olderThanMs ?? ORPHAN_AGE_MS);
    const requeued: string[] = [];
    const failed: string[] = [];
    const cancelled: string[] = [];
    for (const record of await this.store.list({ state: 'waiting', app: options.app, limit: options.limit ?? 500 })) {
      if (Date.parse(record.createdAt) > before || (await this.bull.getJob(bullJobId(record.id)))) continue;
      if (await this.redis.exists(this.store.keys.cancel(record.id))) {
        // Cancelled while waiting, its BullMQ job removed, and then its record could not be ended: it ends now.
        if ((await this.store.finish(record.id, 'cancelled', { error: 'cancelled while waiting' })).state === 'cancelled') cancelled.push(record.id);
        continue;
      }
      if (record.trigger === 'webhook') {
        await this.bull.add('deploy', { id: record.id }, this.jobOptions(record.id));
        requeued.push(record.id);
      } else {
        // An ended job stays ended: one cancelled meanwhile keeps its state.
        if ((await this.store.finish(record.id, 'failed', { error: 'could not be queued' })).state === 'failed') failed.push(record.id);
      }
    }
    return { requeued, failed, cancelled };
  }

  private jobOptions(id: string) {
    return {
      jobId: bullJobId(id),
      attempts: this.attempts,
      backoff: { type: 'exponential', delay: this.backoffMs },
      removeOnComplete: { count: 200 },
      removeOnFail: { count: 1000 },
    };
  }

  /**
   * A waiting job is taken out of the queue and ends cancelled at once. A
   * running one is asked to stop; the worker stops it at the next safe point
   * (never mid-cutover) and records the outcome.
   */
  async cancel(id: string): Promise<JobRecord> {
    return withRedis(this.redis, async () => {
      const ended = (job: JobRecord) => new SlipwayError('job_finished', `job ${id} already ended (${job.state})`, { status: 409 });
      const record = await this.store.mustGet(id);
      if (FINAL_STATES.has(record.state)) throw ended(record);
      // finish leaves a record that ended meanwhile as it ended: a job that completed in between was not cancelled.
      const cancelled = (job: JobRecord): JobRecord => {
        if (job.state !== 'cancelled') throw ended(job);
        return job;
      };
      const job = await this.bull.getJob(bullJobId(id));
      const state = job ? await job.getState() : 'unknown';
      // Waiting and never started: it ends here. One an attempt started and that waits again (its worker died, maybe
      // after its switch) is asked to stop like a running one: the worker that takes it knows whether it went live.
      if (job && record.startedAt === null && (state === 'waiting' || state === 'delayed' || state === 'prioritized')) {
        let removed = false;
        try {
          // Marked first: should the record's finish fail below, repairOrphans finds a cancelled job, not an orphan to queue again.
          await this.redis.set(this.store.keys.cancel(id), '1');
          await job.remove();
          removed = true;
        } catch {
          // Taken by a worker in the meantime: fall through to asking it to stop.
        }
        if (removed) return cancelled(await this.store.finish(id, 'cancelled', { error: 'cancelled while waiting' }));
      }
      // Given up by BullMQ (its workers kept dying) and not ended yet: its last attempt may have gone live, which the
      // give-up finds out from etcd (the worker's, or the sweep for lost ones): asked to stop, as a running one is.
      const givenUp = state === 'failed' && job?.failedReason === STALLED_OUT && record.startedAt !== null;
      if (!givenUp && (!job || state === 'unknown' || state === 'completed' || state === 'failed')) {
        // The queue has no live job for it (lost with a flushed Redis, say): the record is all there is.
        return cancelled(await this.store.finish(id, 'cancelled', { error: 'cancelled (no live queue job)' }));
      }
      // Until the job's record goes (retention): a job waiting for a busy app may be taken up hours later.
      await this.redis.set(this.store.keys.cancel(id), '1');
      await this.redis.publish(this.store.keys.events, JSON.stringify({ id, app: record.app, cancel: true }));
      return record;
    });
  }

  /**
   * Re-runs a failed or cancelled job for the same commit, as a new job; the
   * old one stays in the history. Not once a newer job of the app is
   * waiting, running or live: the re-run, newest of all, would deploy the
   * older commit over it (`slipway deploy --ref` does that on purpose).
   */
  async retry(id: string): Promise<JobRecord> {
    const old = await withRedis(this.redis, () => this.store.mustGet(id));
    if (old.state !== 'failed' && old.state !== 'cancelled') {
      throw new SlipwayError('not_retryable', `job ${id} is ${old.state}; only failed or cancelled jobs can be retried`, { status: 409 });
    }
    if (old.trigger === 'git-push') {
      // Its push was refused with it: the commit is on no branch here, and a deploy of it would not move one.
      throw new SlipwayError('not_retryable', `job ${id} came from a git push, refused when the job ${old.state === 'cancelled' ? 'was cancelled' : 'failed'}: push again to deploy ${old.sha?.slice(0, 12) ?? 'it'}`, { status: 409 });
    }
    // One re-run per job: two operators at once (the dashboard's button, `slipway retry`) would otherwise both pass
    // the newer-job check and queue two, one superseding the other or deploying the commit twice. Held in turn,
    // the second finds the first's re-run newer and is refused.
    const claim = this.store.keys.retrying(id);
    const token = await withRedis(this.redis, () => this.store.claim(claim, RETRY_CLAIM_MS));
    if (token === null) throw new SlipwayError('not_retryable', `job ${id} is being re-run by another request`, { status: 409 });
    try {
      return await this.retryClaimed(old);
    } finally {
      // Only while it is still this request's: one that outlived RETRY_CLAIM_MS may have been taken by another since.
      await withRedis(this.redis, () => this.store.deleteIfHolds(claim, token)).catch(() => {});
    }
  }

  /** The re-run, once this request holds the job's claim: what another queued before it is newer, and refuses it. */
  private async retryClaimed(old: JobRecord): Promise<JobRecord> {
    const id = old.id;
    // Read before the check: a push queued between the check and the enqueue is placed by its chain (JobRecord.chosenAfter).
    const { chosenAfter, newer } = await withRedis(this.redis, async () => {
      const last = await this.store.lastJobId();
      const newerId = await this.store.supersededBy(old.app, id);
      return { chosenAfter: last, newer: newerId === null ? null : await this.store.get(newerId) };
    });
    if (newer) {
      const what = old.sha ? `commit ${old.sha.slice(0, 12)}` : (old.image ?? 'its image');
      const how = old.sha ? `slipway deploy ${old.app} --ref ${old.sha}` : `slipway deploy ${old.app} --image ${old.image}`;
      throw new SlipwayError('not_retryable', `job ${newer.id} of ${old.app} came after job ${id} and is ${newer.state === 'completed' ? 'live' : newer.state}: re-running ${what} would deploy it over that; ${how} does it on purpose`, { status: 409 });
    }
    const { app, sha, ref, image, push } = old;
    const record = await this.enqueue({ app, sha, ref, image, push, trigger: 'retry', retryOf: id, ...(sha && ref ? { chosenAfter } : {}) });
    await withRedis(this.redis, () => this.store.update(id, { retriedBy: record.id }));
    return record;
  }

  /**
   * `retry --failed`: per app, its newest job, when that failed and was not
   * retried yet. Anything newer decides the app instead: a job waiting,
   * running or live, and as much a cancelled one or a failed one already
   * re-run (an older failure behind them would deploy a commit older than
   * the newest anyone tried). Each app's failure that is left is named once
   * in `skipped`. One app's retry refused (`skipped`) or failing (`failed`:
   * Redis went away) does not hide the others': every job queued is in
   * `retried`.
   */
  async retryFailed(app?: string): Promise<{ retried: JobRecord[]; skipped: Array<{ job: JobRecord; reason: string }>; failed: Array<{ job: JobRecord; error: unknown }> }> {
    const recent = await withRedis(this.redis, () => this.store.list({ app, limit: 2000 }));
    const retried: JobRecord[] = [];
    const skipped: Array<{ job: JobRecord; reason: string }> = [];
    const failed: Array<{ job: JobRecord; error: unknown }> = [];
    const decidedBy = new Map<string, JobRecord>();
    const named = new Set<string>();
    for (const job of recent) {
      const newer = decidedBy.get(job.app);
      if (newer) {
        if (job.state === 'failed' && !job.retriedBy && !named.has(job.app)) {
          named.add(job.app);
          skipped.push({ job, reason: `job ${newer.id} of this app came after it and is ${newer.state}${newer.retriedBy ? ` (re-run as job ${newer.retriedBy})` : ''}` });
        }
        continue;
      }
      // A superseded job has something newer of its own app listed before it; whatever comes first decides.
      decidedBy.set(job.app, job);
      if (job.state === 'failed' && !job.retriedBy) {
        named.add(job.app);
        try {
          retried.push(await this.retry(job.id));
        } catch (err) {
          if (isSlipwayError(err, 'not_retryable')) skipped.push({ job, reason: err.message });
          else failed.push({ job, error: err });
        }
      }
    }
    return { retried, skipped, failed };
  }

  async close(): Promise<void> {
    await this.bull.close().catch(() => {});
  }
}
