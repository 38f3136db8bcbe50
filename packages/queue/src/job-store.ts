import type { Redis } from 'ioredis';
import { SlipwayError } from '@slipway/core/slipway-error';
import { FINAL_STATES, type DeployRequest, type JobRecord, type JobState, type Step } from './job-types.js';
import { DEFAULT_RETENTION, fileFinishedJob, type JobRetention } from './job-retention.js';
import { keys, type Keys } from './redis.js';

/** Published on `<prefix>:events` whenever a job changes; the dashboard and `--follow` listen. */
export interface JobEvent {
  id: string;
  app: string;
  state: JobState;
  step: Step;
}

/** States of a newer job that make an older one pointless to deploy. */
const SUPERSEDING: ReadonlySet<JobState> = new Set(['waiting', 'active', 'completed']);

export interface ListOptions {
  app?: string;
  state?: JobState;
  /** Default 20. */
  limit?: number;
}

/**
 * Creates job records atomically, in one round trip (the webhook
 * receiver's hot path), for several groups at once: the webhooks that
 * arrived together. For each group, in order: optionally claims a forge
 * delivery id (answering what the first delivery queued when it is taken),
 * then for each job: with a push guard, skips it when its commit is the
 * live one or an ancestor of it (`s`) or when a webhook already queued that
 * commit of that app (`d<job>`); else a new id, the record, its place in
 * the indexes and the event announcing it; finally remembers what the
 * delivery queued for its TTL. Groups run in order, so a redelivery in the
 * same batch as the first delivery is a duplicate of it.
 * KEYS: seq, all, events, then the delivery key of each group that has one.
 * ARGV: job key prefix, group count, then per group: its delivery TTL (0:
 * no delivery) and job count, then per job: its app's index key, its app's
 * waiting key, the app (JSON), the app's pushed key for this commit and its
 * live-ancestry key (both '' without a guard), the commit, the number of
 * field arguments, and the field/value pairs.
 * Returns per group {1, outcome...} (an id, `s` or `d<id>` per job) when
 * the delivery is new, {0, what the first delivery recorded} for a duplicate.
 */
const CREATE_JOBS = `
local out = {}
local pos = 3
local nextKey = 4
for g = 1, tonumber(ARGV[2]) do
  local ttl, count = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1])
  pos = pos + 2
  local key = nil
  if ttl > 0 then
    key = KEYS[nextKey]
    nextKey = nextKey + 1
  end
  local existing = key and redis.call('get', key)
  if existing then
    out[g] = {0, existing}
    for r = 1, count do pos = pos + 7 + tonumber(ARGV[pos + 6]) end
  else
    local created = {1}
    local queued = {}
    for r = 1, count do
      local byApp, waiting, app, pushed, ancestry, sha = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3], ARGV[pos + 4], ARGV[pos + 5]
      local fieldCount = tonumber(ARGV[pos + 6])
      local prior = pushed ~= '' and redis.call('get', pushed)
      if ancestry ~= '' and redis.call('sismember', ancestry, sha) == 1 then
        created[#created + 1] = 's'
      elseif prior then
        created[#created + 1] = 'd' .. prior
      else
        local id = redis.call('incr', KEYS[1])
        local sid = tostring(id)
        local fields = {'id', '"' .. sid .. '"'}
        for i = 1, fieldCount do fields[#fields + 1] = ARGV[pos + 6 + i] end
        redis.call('hset', ARGV[1] .. sid, unpack(fields))
        redis.call('zadd', KEYS[2], id, sid)
        redis.call('zadd', byApp, id, sid)
        redis.call('zadd', waiting, id, sid)
        redis.call('publish', KEYS[3], '{"id":"' .. sid .. '","app":' .. app .. ',"state":"waiting","step":"queued"}')
        if pushed ~= '' then redis.call('set', pushed, sid, 'EX', math.max(ttl, 1)) end
        created[#created + 1] = sid
        queued[#queued + 1] = '{"job":"' .. sid .. '","app":' .. app .. '}'
      end
      pos = pos + 7 + fieldCount
    end
    if key then redis.call('set', key, '[' .. table.concat(queued, ',') .. ']', 'EX', ttl) end
    out[g] = created
  end
end
return out`;

/**
 * Runs CREATE_JOBS by its SHA1 (EVALSHA, loading it once per connection)
 * rather than sending the whole script with every webhook.
 */
function createJobs(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
  const commands = redis as unknown as { slipwayCreateJobs?: (...a: Array<string | number>) => Promise<unknown> };
  if (!commands.slipwayCreateJobs) redis.defineCommand('slipwayCreateJobs', { lua: CREATE_JOBS });
  return commands.slipwayCreateJobs!(keys.length, ...keys, ...args);
}

/** Jobs to create together, optionally once per forge delivery id (its key, kept `ttlSeconds`). */
export interface JobGroup {
  requests: readonly DeployRequest[];
  delivery?: { key: string; ttlSeconds: number };
  /**
   * A webhook's push, which a signed body replayed with a fresh delivery id
   * must not turn into a new deploy: each job is skipped when its commit is
   * already live or older than the live release (unless the push was
   * forced), or when a webhook queued that commit of that app within the
   * delivery's TTL. Operator actions never set it.
   */
  guard?: boolean;
}

/** A job a guarded group did not create, and why. */
export interface SkippedJob {
  app: string;
  /** `stale`: its commit is live or an ancestor of what is; `duplicate`: a webhook queued this commit before (`job`). */
  reason: 'stale' | 'duplicate';
  job?: string;
}

/** What became of a {@link JobGroup}: its records, or what the first delivery of its id queued. */
export interface CreatedGroup {
  records: JobRecord[];
  /** For a delivery seen before: `[{"job","app"}…]` of the first one; null when created. */
  previous: string | null;
  /** Jobs the guard skipped (empty without a guard, or for a duplicate delivery). */
  skipped: SkippedJob[];
}

export interface JobStoreOptions {
  /**
   * Applied each time a job finishes: a finished job goes (record, log,
   * indexes) once it is both beyond the newest `keepPerApp` finished jobs of
   * its app and older than `keepDays`. Unfinished jobs never go. Null: none
   * ever goes (a store that only enqueues and cancels can leave it to the
   * worker's). Default {@link DEFAULT_RETENTION}.
   */
  retention?: JobRetention | null;
}

/**
 * Job records and logs in Redis. BullMQ moves jobs through its queue; this
 * holds what users see: states BullMQ has no word for (superseded,
 * cancelled), the step timeline, and the log, which outlives BullMQ's copy
 * of the job. Each field is stored separately so concurrent updates of
 * different fields never overwrite each other.
 */
export class JobStore {
  readonly keys: Keys;

  private readonly retention: JobRetention | null;

  constructor(readonly redis: Redis, prefix: string, options: JobStoreOptions = {}) {
    this.keys = keys(prefix);
    this.retention = options.retention === undefined ? DEFAULT_RETENTION : options.retention;
  }

  async create(request: DeployRequest): Promise<JobRecord> {
    const [created] = await this.createGroups([{ requests: [request] }]);
    return created!.records[0]!;
  }

  /**
   * Creates the records of several groups of jobs, in order, in one round
   * trip (see CREATE_JOBS). A group with a `delivery` first claims that
   * forge delivery id (kept `ttlSeconds`): when it was seen before, nothing
   * is created and `previous` holds what that delivery queued
   * (`[{"job","app"}…]`).
   */
  async createGroups(groups: readonly JobGroup[]): Promise<CreatedGroup[]> {
    const now = new Date().toISOString();
    const keys = [this.keys.seq, this.keys.all, this.keys.events];
    const args: Array<string | number> = [this.keys.job(''), groups.length];
    const records = groups.map(({ requests, delivery, guard }) => {
      if (delivery) keys.push(delivery.key);
      args.push(delivery ? Math.max(1, Math.round(delivery.ttlSeconds)) : 0, requests.length);
      return requests.map((request) => {
        const record: Omit<JobRecord, 'id'> = {
          ...request, ref: request.ref ?? null, image: request.image ?? null,
          state: 'waiting', attempts: 0, createdAt: now, startedAt: null, finishedAt: null,
          error: null, supersededBy: null, retriedBy: null, step: 'queued', steps: [{ step: 'queued', at: now }], result: null,
        };
        // Field/value pairs go straight into the arguments (the webhook hot path): no intermediate objects.
        const start = args.length;
        const guarded = guard === true && delivery !== undefined && record.sha !== null;
        args.push(
          this.keys.byApp(record.app), this.keys.waiting(record.app), JSON.stringify(record.app),
          guarded ? this.keys.pushed(record.app, record.sha!) : '',
          guarded && !record.push?.forced ? this.keys.liveAncestry(record.app) : '',
          record.sha ?? '', 0,
        );
        for (const key in record) {
          const value = record[key as keyof typeof record];
          if (value !== undefined) args.push(key, JSON.stringify(value));
        }
        args[start + 6] = args.length - start - 7;
        return record;
      });
    });
    const results = (await createJobs(this.redis, keys, args)) as Array<[number, ...string[]]>;
    return results.map(([created, ...outcomes], g) => {
      if (created === 0) return { records: [], previous: outcomes[0] ?? '[]', skipped: [] };
      const made: JobRecord[] = [];
      const skipped: SkippedJob[] = [];
      outcomes.forEach((outcome, i) => {
        const record = records[g]![i]!;
        if (outcome === 's') skipped.push({ app: record.app, reason: 'stale' });
        else if (outcome.startsWith('d')) skipped.push({ app: record.app, reason: 'duplicate', job: outcome.slice(1) });
        else made.push({ id: outcome, ...record });
      });
      return { records: made, previous: null, skipped };
    });
  }

  /**
   * Remembers what went live for `app`: its commit, the job, and the
   * commit's recent ancestors (newest first, as `git rev-list` gives them),
   * so that a push of any of them is known stale without asking git. An
   * image deploy (no commit) forgets them: nothing is known stale then.
   */
  async recordLive(app: string, live: { sha: string | null; job: string }, ancestors: readonly string[] = []): Promise<void> {
    const tx = this.redis.multi().del(this.keys.liveAncestry(app));
    if (live.sha) {
      const shas = [live.sha, ...ancestors.filter((sha) => sha !== live.sha)];
      for (let i = 0; i < shas.length; i += 1000) tx.sadd(this.keys.liveAncestry(app), ...shas.slice(i, i + 1000));
    }
    tx.set(this.keys.live(app), JSON.stringify(live));
    await tx.exec();
  }

  /** Whether `sha` is what is live for `app`, or one of its recorded ancestors; and which job made it live. */
  async staleFor(app: string, sha: string): Promise<{ stale: boolean; liveJob: string | null; liveSha: string | null }> {
    const [[, member], [, live]] = (await this.redis.multi().sismember(this.keys.liveAncestry(app), sha).get(this.keys.live(app)).exec()) as [[unknown, number], [unknown, string | null]];
    const parsed = live ? (JSON.parse(live) as { sha: string | null; job: string }) : null;
    return { stale: member === 1, liveJob: parsed?.job ?? null, liveSha: parsed?.sha ?? null };
  }

  async get(id: string): Promise<JobRecord | null> {
    if (!/^\d{1,15}$/.test(id)) return null;
    const hash = await this.redis.hgetall(this.keys.job(id));
    return Object.keys(hash).length ? decode(hash) : null;
  }

  async mustGet(id: string): Promise<JobRecord> {
    const record = await this.get(id);
    if (!record) throw new SlipwayError('unknown_job', `no job ${JSON.stringify(id)}`, { status: 404, fault: 'request' });
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
    await fileFinishedJob(this.redis, this.keys, record, this.retention);
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

  /**
   * The newest job of the same app, newer than `id`, that is waiting,
   * running or already live — or null when `id` is the newest that matters.
   * An older commit is never deployed over a newer push, whatever order the
   * queue hands jobs out in. Failed, cancelled and superseded newer jobs do
   * not count: they never went live.
   */
  async supersededBy(app: string, id: string): Promise<string | null> {
    const newer = await this.redis.zrangebyscore(this.keys.byApp(app), `(${Number(id)}`, '+inf');
    for (const candidate of newer.reverse()) {
      const state = await this.redis.hget(this.keys.job(candidate), 'state');
      if (state && SUPERSEDING.has(JSON.parse(state) as JobState)) return candidate;
    }
    return null;
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
