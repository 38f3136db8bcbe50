import type { Redis } from 'ioredis';
import { SlipwayError } from '@slipway/core/slipway-error';
import { FINAL_STATES, type DeployRequest, type JobRecord, type JobState, type Step } from './job-types.js';
import { keys, type Keys } from './keys.js';

/** Published on `<prefix>:events` whenever a job changes; the dashboard and `--follow` listen. */
export interface JobEvent {
  id: string;
  app: string;
  state: JobState;
  step: Step;
}

export interface ListOptions {
  app?: string;
  state?: JobState;
  /** Default 20. */
  limit?: number;
}

/**
 * Creates a job record atomically: a new id, the record, its place in the
 * indexes, and the event announcing it. KEYS: seq, all, byApp, waiting,
 * events; ARGV: job key prefix, app (JSON), then field/value pairs.
 */
const CREATE_JOB = `
local id = redis.call('incr', KEYS[1])
local sid = tostring(id)
redis.call('hset', ARGV[1] .. sid, 'id', '"' .. sid .. '"', unpack(ARGV, 3))
redis.call('zadd', KEYS[2], id, sid)
redis.call('zadd', KEYS[3], id, sid)
redis.call('zadd', KEYS[4], id, sid)
redis.call('publish', KEYS[5], '{"id":"' .. sid .. '","app":' .. ARGV[2] .. ',"state":"waiting","step":"queued"}')
return sid`;

/** How many jobs per app are kept (with their logs) before the oldest go. */
export const DEFAULT_KEEP_PER_APP = 500;

/**
 * Job records and logs in Redis. BullMQ moves jobs through its queue; this
 * holds what users see: states BullMQ has no word for (superseded,
 * cancelled), the step timeline, and the log, which outlives BullMQ's copy
 * of the job. Each field is stored separately so concurrent updates of
 * different fields never overwrite each other.
 */
export class JobStore {
  readonly keys: Keys;

  constructor(readonly redis: Redis, prefix: string, private readonly keepPerApp = DEFAULT_KEEP_PER_APP) {
    this.keys = keys(prefix);
  }

  async create(request: DeployRequest, initial: Partial<JobRecord> = {}): Promise<JobRecord> {
    const now = new Date().toISOString();
    const fields: Omit<JobRecord, 'id'> = {
      ...request, ref: request.ref ?? null, image: request.image ?? null,
      state: 'waiting', attempts: 0, createdAt: now, startedAt: null, finishedAt: null,
      error: null, supersededBy: null, retriedBy: null, step: 'queued', steps: [{ step: 'queued', at: now }], result: null,
      ...initial,
    };
    const encoded = Object.entries(encode(fields)).flat();
    // One round trip: the webhook receiver's hot path.
    const id = (await this.redis.eval(CREATE_JOB, 5,
      this.keys.seq, this.keys.all, this.keys.byApp(request.app), this.keys.waiting(request.app), this.keys.events,
      this.keys.job(''), JSON.stringify(request.app), ...encoded)) as string;
    return { id, ...fields };
  }

  async get(id: string): Promise<JobRecord | null> {
    if (!/^\d{1,15}$/.test(id)) return null;
    const hash = await this.redis.hgetall(this.keys.job(id));
    return Object.keys(hash).length ? decode(hash) : null;
  }

  async mustGet(id: string): Promise<JobRecord> {
    const record = await this.get(id);
    if (!record) throw new SlipwayError('unknown_job', `no job ${JSON.stringify(id)}`, { status: 404 });
    return record;
  }

  async update(id: string, patch: Partial<JobRecord>): Promise<JobRecord> {
    await this.redis.hset(this.keys.job(id), encode(patch));
    const record = await this.mustGet(id);
    if (patch.state !== undefined && patch.state !== 'waiting') await this.redis.zrem(this.keys.waiting(record.app), id);
    if (patch.state === 'waiting') await this.redis.zadd(this.keys.waiting(record.app), Number(id), id);
    if (patch.state !== undefined || patch.step !== undefined) await this.publish(record);
    return record;
  }

  /** Records that a step began; steps only move forward. */
  async step(id: string, step: Step): Promise<void> {
    const record = await this.mustGet(id);
    if (record.step === step) return;
    await this.update(id, { step, steps: [...record.steps, { step, at: new Date().toISOString() }] });
  }

  /** Ends a job: a final state, its finish time, and why. */
  async finish(id: string, state: JobState, extra: Partial<JobRecord> = {}): Promise<JobRecord> {
    if (!FINAL_STATES.has(state)) throw new Error(`${state} is not a final state`);
    const record = await this.update(id, { state, finishedAt: new Date().toISOString(), ...extra });
    await this.redis.zadd(this.keys.finished(record.app), Number(id), id);
    await this.trim(record.app);
    return record;
  }

  /** Newest first, optionally one app's and one state's. */
  async list(options: ListOptions = {}): Promise<JobRecord[]> {
    const limit = options.limit ?? 20;
    const index = options.app ? this.keys.byApp(options.app) : this.keys.all;
    const out: JobRecord[] = [];
    const page = Math.max(limit, 50);
    for (let start = 0; out.length < limit && start < 20_000; start += page) {
      const ids = await this.redis.zrevrange(index, start, start + page - 1);
      if (ids.length === 0) break;
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hgetall(this.keys.job(id));
      for (const [, hash] of (await pipeline.exec()) ?? []) {
        if (!hash || Object.keys(hash).length === 0) continue;
        const record = decode(hash as Record<string, string>);
        if (!options.state || record.state === options.state) out.push(record);
        if (out.length === limit) break;
      }
    }
    return out;
  }

  /** Jobs of `app` still waiting with an id above `id`: the ones that supersede it. */
  async newerWaiting(app: string, id: string): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.waiting(app), `(${Number(id)}`, '+inf');
  }

  async waitingIds(app: string): Promise<string[]> {
    return this.redis.zrange(this.keys.waiting(app), 0, -1);
  }

  /** Appends lines to a job's log; returns the number of the last one (1-based). */
  async appendLog(id: string, lines: readonly string[]): Promise<number> {
    if (lines.length === 0) return this.redis.llen(this.keys.log(id));
    return this.redis.rpush(this.keys.log(id), ...lines);
  }

  /** Lines `from`..`to` (1-based, inclusive; `to` -1 = the end). */
  async readLog(id: string, from = 1, to = -1): Promise<string[]> {
    return this.redis.lrange(this.keys.log(id), Math.max(0, from - 1), to === -1 ? -1 : to - 1);
  }

  async logLength(id: string): Promise<number> {
    return this.redis.llen(this.keys.log(id));
  }

  private async publish(record: JobRecord): Promise<void> {
    const event: JobEvent = { id: record.id, app: record.app, state: record.state, step: record.step };
    await this.redis.publish(this.keys.events, JSON.stringify(event));
  }

  /** Keeps the newest `keepPerApp` finished jobs of an app; older records and logs go. Unfinished jobs are never trimmed. */
  private async trim(app: string): Promise<void> {
    const excess = (await this.redis.zcard(this.keys.finished(app))) - this.keepPerApp;
    if (excess <= 0) return;
    const old = await this.redis.zrange(this.keys.finished(app), 0, excess - 1);
    const tx = this.redis.multi();
    for (const id of old) {
      tx.del(this.keys.job(id), this.keys.log(id), this.keys.cancel(id))
        .zrem(this.keys.all, id)
        .zrem(this.keys.byApp(app), id)
        .zrem(this.keys.finished(app), id);
    }
    await tx.exec();
  }
}

function encode(patch: Partial<JobRecord>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(patch)) {
    if (value !== undefined) out[key] = JSON.stringify(value);
  }
  return out;
}

function decode(hash: Record<string, string>): JobRecord {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(hash)) out[key] = JSON.parse(value);
  return out as unknown as JobRecord;
}
