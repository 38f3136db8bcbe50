import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { SlipwayError } from '@slipway/core/slipway-error';
import { branchOfRef } from '@slipway/core/validate';
import { FINAL_STATES, type DeployRequest, type JobRecord, type JobState, type Push, type Step, type Trigger } from './job-types.js';
import { DEFAULT_RETENTION, defineRetentionScript, fileFinishedJob, indexHistory, LUA_INDEX_KEYS, LUA_ISO_MS, sweepRetention, type JobRetention, type SweepOptions, type SweepResult } from './job-retention.js';
import { keys, type Keys } from './redis.js';

/** Published on `<prefix>:events` whenever a job changes; the dashboard and `--follow` listen. */
export interface JobEvent {
  id: string;
  app: string;
  state: JobState;
  step: Step;
}

/**
 * A forced push's mark names the head it replaced too: force-pushing the
 * branch back to a commit pushed a day ago is a new push (rolling back on
 * purpose), while the same body sent again is still its duplicate.
 */
function forcedFrom(record: Pick<JobRecord, 'push'>): string | undefined {
  return record.push?.forced && record.push.before ? record.push.before : undefined;
}

/**
 * The head a push that may be a rewind replaced: a Gitea or GitLab push
 * whose `before` names a commit (not a new branch's zeros). GitHub's
 * payload says `forced`, and its word stands (a test of `stale_push` that
 * sends `forced: false` gets it). Gitea's and GitLab's payloads do not say
 * `forced`; CREATE_JOBS takes
 * such a push for a forced one when it moved the branch back (from the
 * live commit, or from one not in the live ancestry, to one in it), which
 * no fast-forward does, unless an operator went back (recordLive's
 * `back`). Like any forced push, the worker deploys it only when the
 * branch is at its commit.
 */
export function rewindFrom(record: Pick<JobRecord, 'push'>): string | undefined {
  const push = record.push;
  const silent = push?.provider === 'gitea' || push?.provider === 'gitlab';
  return silent && !push.forced && push.before && !/^0+$/.test(push.before) ? push.before : undefined;
}

/** Recent jobs of an app read to order pushes by their `before`s (and the most hops followed). */
const PUSH_CHAIN_JOBS = 100;

/** KEYS[1] (a counter) raised to ARGV[1] if it is below it; 1 when it was. */
const RAISE_TO = `if (tonumber(redis.call('get', KEYS[1])) or 0) < tonumber(ARGV[1]) then redis.call('set', KEYS[1], ARGV[1]) return 1 end return 0`;
/** Deletes KEYS[1] if it holds ARGV[1]. */
const DELETE_IF_EQUAL = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`;
/** KEYS[1] set to ARGV[2] (its expiry kept) only while it holds ARGV[1]; 1 when it was. */
const REPLACE_IF_EQUAL = `if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2], 'KEEPTTL') return 1 end return 0`;

/** States of a newer job that make an older one pointless to deploy. */
const SUPERSEDING: ReadonlySet<JobState> = new Set(['waiting', 'active', 'completed']);

/** Who appends a batch to a job's log, and which of its batches it is (1, 2, ...). */
export interface LogWriter {
  name: string;
  batch: number;
}

/** What recordLive writes at `live:<app>`: the live commit, the job that made it live, whether an operator went back to it. */
interface LiveRecord {
  sha: string | null;
  job: string;
  back?: boolean;
}
const parseLive = (text: string | null): LiveRecord | null => (text ? (JSON.parse(text) as LiveRecord) : null);

/**
 * An append that carries the log's kept end (appendLog `closingTail`):
 * its lines from the `from`th (0-based) include, first, `copied` lines
 * the kept end's copy in Redis holds (pushLogTail). Another attempt that
 * took the job's log over added those already: they are left out then.
 */
export interface ClosingTail {
  from: number;
  copied: number;
}

export interface ListOptions {
  app?: string;
  state?: JobState;
  trigger?: Trigger;
  /**
   * Only jobs older than this one (ids only grow): the `next` of the page
   * before. Jobs created meanwhile never shift a page.
   */
  before?: string;
  /**
   * A commit prefix or words of its message (case-insensitive). 7 to 40
   * hex digits are a commit prefix, found in the commit index over the
   * whole history. Anything else is bounded: one call reads the commit and
   * message of at most {@link SEARCH_SCAN} jobs of the filtered history,
   * newest first from `before`, and `next` continues from there.
   */
  search?: string;
  /** Default 20. */
  limit?: number;
}

/** One page of the history, newest first. */
export interface JobPage {
  jobs: JobRecord[];
  /** The `before` of the next page; null when the history ends here. */
  next: string | null;
}

/**
 * Jobs one search call reads at most (their commit and message only): a
 * search that finds nothing costs a page of older results, not the whole
 * history (~2,000 jobs' pushes are ~1 MB from Redis).
 */
export const SEARCH_SCAN = 2_000;
/** A search of 7 to 40 hex digits is a commit prefix (git's short form is 7): looked up in the commit index. */
const COMMIT_PREFIX = /^[0-9a-f]{7,40}$/;
/** Jobs of one commit prefix a search looks at, at most. */
const COMMIT_HITS = 10_000;
/** Ids read per round trip while searching. */
const SEARCH_CHUNK = 500;

/**
 * Updates fields of an existing job and keeps its indexes in step with its
 * state (the state's sorted sets and its app's waiting set), atomically.
 * A job that ends is filed among its app's finished jobs (by id, and by its
 * `finishedAt`, else Redis's clock) in the same call, so retention finds
 * every ended job whatever happens to the connection afterwards.
 * A job that ended stays as it ended: an update that names a state
 * changes nothing (a cancel racing the job's completion, a worker starting
 * a job cancelled a moment before, a second end of the same state whose
 * time and error would overwrite the first's).
 * KEYS: the job. ARGV: index base, id, field/value pairs.
 * Returns the record's fields after the update, or nil when there is no such job.
 */
const UPDATE_JOB = LUA_INDEX_KEYS + LUA_ISO_MS + `
if redis.call('exists', KEYS[1]) == 0 then return false end
local base, id = ARGV[1], ARGV[2]
local before = redis.call('hmget', KEYS[1], 'state', 'app', 'trigger')
local ended = {${[...FINAL_STATES].map((state) => `${state} = true`).join(', ')}}
if before[1] and ended[bare(before[1])] then
  for i = 3, #ARGV, 2 do
    if ARGV[i] == 'state' then return redis.call('hgetall', KEYS[1]) end
  end
end
redis.call('hset', KEYS[1], unpack(ARGV, 3))
local state = redis.call('hget', KEYS[1], 'state')
if state ~= before[1] then
  local _, was = indexKeys(base, before[2], before[1], before[3])
  local _, now = indexKeys(base, before[2], state, before[3])
  for _, key in ipairs(was) do redis.call('zrem', key, id) end
  for _, key in ipairs(now) do redis.call('zadd', key, id, id) end
  if ended[bare(state)] and not (before[1] and ended[bare(before[1])]) then
    local at = isoMs(bare(redis.call('hget', KEYS[1], 'finishedAt')))
    if at == 0 then
      local clock = redis.call('time')
      at = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
    end
    redis.call('zadd', base .. 'finished:' .. bare(before[2]), id, id)
    redis.call('zadd', base .. 'finished-at:' .. bare(before[2]), at, id)
  end
end
local waiting = base .. 'waiting:' .. bare(before[2])
if bare(state) == 'waiting' then redis.call('zadd', waiting, id, id) else redis.call('zrem', waiting, id) end
return redis.call('hgetall', KEYS[1])`;

/**
 * Creates job records atomically, in one round trip (the webhook
 * receiver's hot path), for several groups at once: the webhooks that
 * arrived together. For each group, in order: optionally claims a forge
 * delivery id (answering what the first delivery queued when it is taken),
 * then for each job: with a push guard, skips it when its commit is the
 * live one or an ancestor of it (`s`) or when a webhook already queued that
 * commit of that app (`d<job>`); else a new id, the record, its place in
 * the indexes and the event announcing it; finally remembers what the
 * delivery queued for its TTL, when it queued anything. Groups run in order, so a redelivery in the
 * same batch as the first delivery is a duplicate of it.
 * KEYS: seq, apps, events, then the delivery key of each group that has one.
 * ARGV: job key prefix, group count, index base, then per group: its
 * delivery TTL (0: no delivery) and job count, then per job: its trigger,
 * its app's waiting key, the app (JSON), the app's pushed key for this
 * commit and its live-ancestry key (both '' without a guard), the commit,
 * the pushed key of the head a forced push replaced (deleted when the job
 * is made: that commit pushed again is a new push; else ''), then for a
 * push that may be a rewind (see rewindFrom; else five '') the head it
 * replaced, the app's live key, and the pushed key, the key to delete and
 * the `push` field's value the job takes if it is one, the number of
 * field arguments, and the field/value pairs.
 * Returns per group {1, outcome...} (an id, `f<id>` for a rewind made a
 * forced push, `s`, or `d<id>` / `w<id>` per job: `w` when that earlier
 * job has not started) when the delivery is new,
 * {0, what the first delivery recorded, ids of its jobs not started...}
 * for a duplicate.
 */
const CREATE_JOBS = LUA_INDEX_KEYS + `
local out = {}
local pos = 4
local nextKey = 4
local base = ARGV[3]
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
    for _, queued in ipairs(cjson.decode(existing)) do
      if redis.call('hget', ARGV[1] .. queued.job, 'state') == '"waiting"' then out[g][#out[g] + 1] = queued.job end
    end
    for r = 1, count do pos = pos + 13 + tonumber(ARGV[pos + 12]) end
  else
    local created = {1}
    local queued = {}
    for r = 1, count do
      local trigger, waiting, app, pushed, ancestry, sha, forget = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3], ARGV[pos + 4], ARGV[pos + 5], ARGV[pos + 6]
      local fieldCount = tonumber(ARGV[pos + 12])
      local stale = ancestry ~= '' and redis.call('sismember', ancestry, sha) == 1
      local rewind = false
      if stale and ARGV[pos + 7] ~= '' then
        -- The branch moved from the live commit, or from a commit that is not in the live ancestry, to an older one
        -- that is: no fast-forward does that (its head before is an ancestor of its commit). A forced push the
        -- payload did not call one (Gitea, GitLab). Not to the live commit itself (deployed already: a replay would
        -- only deploy it again), nor after an operator went back: the ancestry then holds the commits gone back from,
        -- and a push of one of them (a replay of an amend, say) would undo the operator's choice.
        local before, live = ARGV[pos + 7], redis.call('get', ARGV[pos + 8])
        live = live and cjson.decode(live)
        if live and not live.back and live.sha ~= sha and before ~= sha and (before == live.sha or redis.call('sismember', ancestry, before) == 0) then
          stale, rewind = false, true
          pushed, forget = ARGV[pos + 9], ARGV[pos + 10]
        end
      end
      local prior = (not stale) and pushed ~= '' and redis.call('get', pushed)
      if stale then
        created[#created + 1] = 's'
      elseif prior then
        created[#created + 1] = (redis.call('hget', ARGV[1] .. prior, 'state') == '"waiting"' and 'w' or 'd') .. prior
      else
        local id = redis.call('incr', KEYS[1])
        local sid = tostring(id)
        local fields = {'id', '"' .. sid .. '"'}
        for i = 1, fieldCount do fields[#fields + 1] = ARGV[pos + 12 + i] end
        if rewind then
          for i = 3, #fields, 2 do if fields[i] == 'push' then fields[i + 1] = ARGV[pos + 11] end end
        end
        redis.call('hset', ARGV[1] .. sid, unpack(fields))
        if sha ~= '' then redis.call('zadd', base .. 'shas', 0, sha .. ':' .. sid) end
        local fixed, byState = indexKeys(base, app, 'waiting', trigger)
        for _, index in ipairs(fixed) do redis.call('zadd', index, id, sid) end
        for _, index in ipairs(byState) do redis.call('zadd', index, id, sid) end
        redis.call('sadd', KEYS[2], bare(app))
        redis.call('zadd', waiting, id, sid)
        redis.call('publish', KEYS[3], '{"id":"' .. sid .. '","app":' .. app .. ',"state":"waiting","step":"queued"}')
        if pushed ~= '' then redis.call('set', pushed, sid, 'EX', math.max(ttl, 1)) end
        if forget ~= '' then redis.call('del', forget) end
        created[#created + 1] = rewind and ('f' .. sid) or sid
        queued[#queued + 1] = '{"job":"' .. sid .. '","app":' .. app .. '}'
      end
      pos = pos + 13 + fieldCount
    end
    -- Only a delivery that queued something is remembered: one the guard answered (stale, a commit already queued)
    -- is answered the same way again, and a captured body replayed with fresh delivery ids (the id is not signed)
    -- then adds no key per request for the retention's 72 hours.
    if key and #queued > 0 then redis.call('set', key, '[' .. table.concat(queued, ',') .. ']', 'EX', ttl) end
    out[g] = created
  end
end
return out`;

/**
 * Appends the lines (from ARGV[3], or ARGV[5] for slipwayAppendLogClosingTail)
 * to the log KEYS[1] unless writer ARGV[1] already appended its batch
 * ARGV[2] (KEYS[2] keeps each writer's last): ioredis sends a command again
 * when the connection drops before its answer, and Redis may have run it.
 * Returns the log's length. RPUSH in slices, as `unpack` of thousands of
 * values overflows Lua's stack.
 */
const APPEND_LOG = `
local first = #KEYS == 4 and 5 or 3
local last = tonumber(redis.call('hget', KEYS[2], ARGV[1]) or '0')
local batch = tonumber(ARGV[2])
if last >= batch then return redis.call('llen', KEYS[1]) end
redis.call('hset', KEYS[2], ARGV[1], batch)
-- slipwayAppendLogClosingTail: the lines carry the log's kept end, whose copy (KEYS 3, its owner and bytes in 4) is
-- dropped in the same step when it is this writer's. When another attempt took the job's log over, it took the copy
-- too and added it: the ARGV[4] lines from the ARGV[3]th are what the copy held, in the log already, and are left out.
local skipFrom, skipCount = 0, 0
if #KEYS == 4 then
  local meta = redis.call('hmget', KEYS[4], 'owner', 'took')
  if not meta[1] or meta[1] == ARGV[1] then
    redis.call('del', KEYS[3])
    -- An attempt that took the log over from another keeps saying so: the other, cut off and ending after this one,
    -- must still find the copy taken (and neither add its lines again nor start a new copy). Its bytes go with the list.
    if meta[2] then redis.call('hset', KEYS[4], 'bytes', 0) else redis.call('del', KEYS[4]) end
  else
    skipFrom, skipCount = first + tonumber(ARGV[3]), tonumber(ARGV[4])
  end
end
local lines = ARGV
if skipCount > 0 then
  lines = {}
  for i = first, skipFrom - 1 do lines[#lines + 1] = ARGV[i] end
  lines[#lines + 1] = '[' .. skipCount .. ' lines of this end are above, added when another attempt took the job over]'
  for i = skipFrom + skipCount, #ARGV do lines[#lines + 1] = ARGV[i] end
  first = 1
end
local length = redis.call('llen', KEYS[1])
for i = first, #lines, 1000 do length = redis.call('rpush', KEYS[1], unpack(lines, i, math.min(i + 999, #lines))) end
return length`;

/**
 * Adds lines to a running job's kept end (KEYS: the tail list, a hash of
 * its owner, last batch and bytes) when writer ARGV[4] owns it and batch
 * ARGV[5] is newer than its last (ioredis may send one again after a
 * reconnect), then lets the oldest go
 * until at most ARGV[1] lines and ARGV[2] bytes (a newline counted per
 * line) are left, never the newest. Each line is added and let go once:
 * the cost follows what the build prints. Kept ARGV[3] seconds past its
 * last line, should nothing take it. Returns the lines kept, or -1 when
 * another writer owns it (a newer attempt took the job's log over).
 */
const PUSH_LOG_TAIL = `
local meta = redis.call('hmget', KEYS[2], 'owner', 'batch', 'bytes')
if meta[1] and meta[1] ~= ARGV[4] then return -1 end
if meta[1] and tonumber(meta[2] or '0') >= tonumber(ARGV[5]) then return redis.call('llen', KEYS[1]) end
local maxLines, maxBytes = tonumber(ARGV[1]), tonumber(ARGV[2])
local added = 0
for i = 6, #ARGV do added = added + #ARGV[i] + 1 end
for i = 6, #ARGV, 1000 do redis.call('rpush', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
local bytes = tonumber(meta[3] or '0') + added
local length = redis.call('llen', KEYS[1])
while length > 1 and (length > maxLines or bytes > maxBytes) do
  bytes = bytes - #redis.call('lpop', KEYS[1]) - 1
  length = length - 1
end
redis.call('hset', KEYS[2], 'owner', ARGV[4], 'batch', ARGV[5], 'bytes', bytes)
redis.call('expire', KEYS[1], ARGV[3])
redis.call('expire', KEYS[2], ARGV[3])
return length`;

/**
 * Moves a job's kept end (KEYS 1, 2) into its log (KEYS 3) after the line
 * ARGV[1], in one step, and makes writer ARGV[2] its owner from now on (for
 * ARGV[3] seconds): an earlier attempt cut off and writing still neither
 * adds to it nor drops it, and leaves out of its closing append the lines
 * the copy held (see APPEND_LOG): the owner hash says `took` from then on,
 * and stays, for that attempt to find, after this one's end. Returns how
 * many lines moved (0: none).
 */
const TAKE_LOG_TAIL = `
local lines = redis.call('lrange', KEYS[1], 0, -1)
local previous = redis.call('hmget', KEYS[2], 'owner', 'took')
redis.call('del', KEYS[1], KEYS[2])
redis.call('hset', KEYS[2], 'owner', ARGV[2], 'bytes', 0)
if previous[1] or previous[2] then redis.call('hset', KEYS[2], 'took', 1) end
redis.call('expire', KEYS[2], ARGV[3])
if #lines == 0 then return 0 end
redis.call('rpush', KEYS[3], ARGV[1])
for i = 1, #lines, 1000 do redis.call('rpush', KEYS[3], unpack(lines, i, math.min(i + 999, #lines))) end
return #lines`;

/** How long a kept end outlives its last line when no attempt takes it (longer than any build may run). */
const LOG_TAIL_TTL_S = 8 * 24 * 3600;

/**
 * Lines ARGV[1]..ARGV[2] (0-based, inclusive) of the log KEYS[1], cut after
 * the line that brings them to ARGV[3] bytes: at least one line, so a
 * reader always moves on. What the client holds is bounded by bytes, not
 * only by lines (a page of 500 lines of 16 KB is 8 MB).
 */
const READ_LOG_BYTES = `
local from, to, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local length = redis.call('llen', KEYS[1])
if to < 0 or to >= length then to = length - 1 end
local bytes, out = 0, {}
-- A slice at a time: Redis itself never copies more than about the budget, however long the lines.
while from <= to do
  local lines = redis.call('lrange', KEYS[1], from, math.min(to, from + 99))
  if #lines == 0 then break end
  for _, line in ipairs(lines) do
    out[#out + 1] = line
    bytes = bytes + #line
    if bytes >= budget then return out end
  end
  from = from + #lines
end
return out`;

/**
 * Runs CREATE_JOBS by its SHA1 (EVALSHA, loading it once per connection)
 * rather than sending the whole script with every webhook.
 */
function createJobs(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
  defineJobScripts(redis);
  const commands = redis as unknown as { slipwayCreateJobs: (...a: Array<string | number>) => Promise<unknown> };
  return commands.slipwayCreateJobs(keys.length, ...keys, ...args);
}

/**
 * Defines the store's Lua scripts as commands of `redis`, once. The
 * JobStore does it when it is made, before any command: on an
 * auto-pipelined connection (the receiver's) ioredis builds one pipeline
 * per tick, and a command defined after that tick's pipeline exists is
 * missing from it ("pipeline[functionName] is not a function").
 */
export function defineJobScripts(redis: Redis): void {
  const defined = redis as unknown as Record<string, unknown>;
  if (!defined.slipwayCreateJobs) redis.defineCommand('slipwayCreateJobs', { lua: CREATE_JOBS });
  if (!defined.slipwayUpdateJob) redis.defineCommand('slipwayUpdateJob', { lua: UPDATE_JOB });
  if (!defined.slipwayAppendLog) redis.defineCommand('slipwayAppendLog', { numberOfKeys: 2, lua: APPEND_LOG });
  if (!defined.slipwayAppendLogClosingTail) redis.defineCommand('slipwayAppendLogClosingTail', { numberOfKeys: 4, lua: APPEND_LOG });
  if (!defined.slipwayPushLogTail) redis.defineCommand('slipwayPushLogTail', { numberOfKeys: 2, lua: PUSH_LOG_TAIL });
  if (!defined.slipwayTakeLogTail) redis.defineCommand('slipwayTakeLogTail', { numberOfKeys: 3, lua: TAKE_LOG_TAIL });
  if (!defined.slipwayReadLogBytes) redis.defineCommand('slipwayReadLogBytes', { numberOfKeys: 1, lua: READ_LOG_BYTES });
  defineRetentionScript(redis);
}

/** Jobs to create together, optionally once per forge delivery id (its key, kept `ttlSeconds`). */
export interface JobGroup {
  requests: readonly DeployRequest[];
  delivery?: { key: string; ttlSeconds: number };
  /**
   * A webhook's push, which a signed body replayed with a fresh delivery id
   * must not turn into a new deploy: each job is skipped when its commit is
   * already live or older than the live release (unless the push was
   * forced, or moved the branch back: see rewindFrom), or when a webhook queued that commit of that app within the
   * delivery's TTL (for a forced push: that commit over the same previous
   * head, so forcing the branch back to a commit pushed earlier deploys
   * it). Operator actions never set it.
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
  /**
   * Of the jobs an earlier delivery (or webhook of the commit) created, those
   * not started yet. Their BullMQ jobs may be missing: the first delivery's
   * answer can be lost after its records were written (its client then
   * gave up, or ioredis sent the script again after reconnecting, and that
   * second run found the delivery claimed).
   */
  stillWaiting: string[];
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
    defineJobScripts(redis);
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
    const keys = [this.keys.seq, this.keys.apps, this.keys.events];
    const args: Array<string | number> = [this.keys.job(''), groups.length, this.keys.indexBase];
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
        const replaced = forcedFrom(record);
        const rewound = guarded ? rewindFrom(record) : undefined;
        args.push(
          record.trigger, this.keys.waiting(record.app), JSON.stringify(record.app),
          guarded ? this.keys.pushed(record.app, record.sha!, replaced) : '',
          guarded && !record.push?.forced ? this.keys.liveAncestry(record.app) : '',
          record.sha ?? '',
          // A forced push moves the branch off the head it replaced: a later push of that commit is new, not a replay.
          guarded && replaced ? this.keys.pushed(record.app, replaced) : '',
          ...(rewound
            ? [rewound, this.keys.live(record.app), this.keys.pushed(record.app, record.sha!, rewound), this.keys.pushed(record.app, rewound), JSON.stringify({ ...record.push, forced: true })]
            : ['', '', '', '', '']),
          0,
        );
        for (const key in record) {
          const value = record[key as keyof typeof record];
          if (value !== undefined) args.push(key, JSON.stringify(value));
        }
        args[start + 12] = args.length - start - 13;
        return record;
      });
    });
    const results = (await createJobs(this.redis, keys, args)) as Array<[number, ...string[]]>;
    return results.map(([created, ...outcomes], g) => {
      if (created === 0) return { records: [], previous: outcomes[0] ?? '[]', skipped: [], stillWaiting: outcomes.slice(1) };
      const made: JobRecord[] = [];
      const skipped: SkippedJob[] = [];
      const stillWaiting: string[] = [];
      outcomes.forEach((outcome, i) => {
        const record = records[g]![i]!;
        if (outcome === 's') skipped.push({ app: record.app, reason: 'stale' });
        else if (outcome[0] === 'd' || outcome[0] === 'w') {
          skipped.push({ app: record.app, reason: 'duplicate', job: outcome.slice(1) });
          if (outcome[0] === 'w') stillWaiting.push(outcome.slice(1));
        } else if (outcome[0] === 'f') made.push({ id: outcome.slice(1), ...record, push: { ...record.push!, forced: true } });
        else made.push({ id: outcome, ...record });
      });
      return { records: made, previous: null, skipped, stillWaiting };
    });
  }

  /** Drops the mark that a webhook queued this job's commit (see CREATE_JOBS), only while it still names the job. */
  async forgetPushed(record: JobRecord): Promise<void> {
    if (record.sha) await this.deleteIfHolds(this.keys.pushed(record.app, record.sha, forcedFrom(record)), record.id);
  }

  /**
   * Takes `key` for `ttlMs` unless another holds it: the token to release
   * it with (deleteIfHolds), or null. A claim found holding this call's own
   * token is taken too: ioredis sent the SET again after a reconnect, its
   * first answer lost.
   */
  async claim(key: string, ttlMs: number): Promise<string | null> {
    const token = randomUUID();
    const taken = (await this.redis.set(key, token, 'PX', ttlMs, 'NX')) !== null || (await this.redis.get(key)) === token;
    return taken ? token : null;
  }

  /** Ids of `app`'s jobs that finished between `fromMs` and `toMs` (by their filed finish time), oldest first, at most `limit`. */
  async finishedBetween(app: string, fromMs: number, toMs: number, limit = 500): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.finishedAt(app), fromMs, toMs, 'LIMIT', 0, limit);
  }

  /** Deletes `key` only while it holds `value` (a claim that expired and was taken by another is theirs). */
  async deleteIfHolds(key: string, value: string): Promise<void> {
    await this.redis.eval(DELETE_IF_EQUAL, 1, key, value);
  }

  /** Sets `key` to `next`, its expiry kept, only while it holds `value`; whether it did. */
  async replaceIfHolds(key: string, value: string, next: string): Promise<boolean> {
    return (await this.redis.eval(REPLACE_IF_EQUAL, 1, key, value, next)) === 1;
  }

  /**
   * What is live for `app` and the commits a push of which is stale: the
   * live one and its `ancestors` (newest first, as `git rev-list` gives
   * them; none for an image deploy: nothing is known stale then). With `operator` (a rollback, or a deploy
   * an operator asked for) to a commit among those already stale, the ones
   * it went back from stay stale too: the branch did not move, so a push of
   * one of them now is a replay, or a redelivery, of one already deployed,
   * and does not undo the operator's choice (a forced push, or `slipway
   * deploy --ref`, still does). A push, forced back or not, moved the
   * branch: what is stale is then its commit's history alone.
   */
  async recordLive(app: string, live: { sha: string | null; job: string }, ancestors: readonly string[] = [], options: { operator?: boolean } = {}): Promise<void> {
    const back = options.operator === true && live.sha !== null && (await this.wentBack(app, live.sha, ancestors));
    const tx = this.redis.multi();
    if (!back) tx.del(this.keys.liveAncestry(app));
    if (live.sha) {
      const shas = [live.sha, ...ancestors.filter((sha) => sha !== live.sha)];
      for (let i = 0; i < shas.length; i += 1000) tx.sadd(this.keys.liveAncestry(app), ...shas.slice(i, i + 1000));
    }
    // `back` tells CREATE_JOBS that the ancestry holds commits newer than the live one: a push from it is no rewind.
    tx.set(this.keys.live(app), JSON.stringify(back ? { ...live, back: true } : live));
    await tx.exec();
  }

  /**
   * Whether an operator's deploy of `sha` (its `ancestors` newest first)
   * went back: not when it moves on from the live commit (one of its
   * ancestors); as the live record said when it deploys the live commit
   * again; else when the live ancestry holds a commit outside its history,
   * one it went back from, or the branch's while `sha` (a release rolled
   * back to) is not (all of them, when its ancestors could not be read).
   */
  private async wentBack(app: string, sha: string, ancestors: readonly string[]): Promise<boolean> {
    const [[, text], [, members]] = (await this.redis.multi().get(this.keys.live(app)).smembers(this.keys.liveAncestry(app)).exec()) as [[unknown, string | null], [unknown, string[]]];
    const previous = parseLive(text);
    if (previous?.sha === sha) return previous.back === true;
    // Moving on from the live commit, unless that one was gone back to: what it went back from may be newer still.
    if (previous?.sha && previous.back !== true && ancestors.includes(previous.sha)) return false;
    const own = new Set(ancestors).add(sha);
    return members.some((member) => !own.has(member));
  }

  /**
   * Whether `sha` is what is live for `app`, or one of its recorded
   * ancestors; which job made it live; whether an operator went back to it
   * from commits still in the ancestry (see recordLive).
   */
  async staleFor(app: string, sha: string): Promise<{ stale: boolean; liveJob: string | null; liveSha: string | null; back: boolean }> {
    const [[, member], [, live]] = (await this.redis.multi().sismember(this.keys.liveAncestry(app), sha).get(this.keys.live(app)).exec()) as [[unknown, number], [unknown, string | null]];
    const parsed = parseLive(live);
    return { stale: member === 1, liveJob: parsed?.job ?? null, liveSha: parsed?.sha ?? null, back: parsed?.back === true };
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
    const commands = this.redis as unknown as { slipwayUpdateJob: (...a: string[]) => Promise<string[] | null> };
    const fields = /^\d{1,15}$/.test(id) ? await commands.slipwayUpdateJob('1', this.keys.job(id), this.keys.indexBase, id, ...Object.entries(encode(patch)).flat()) : null;
    if (!fields) throw new SlipwayError('unknown_job', `no job ${JSON.stringify(id)}`, { status: 404, fault: 'request' });
    const hash: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) hash[fields[i]!] = fields[i + 1]!;
    const record = decode(hash);
    if (patch.state !== undefined || patch.step !== undefined) await this.publish(record);
    return record;
  }

  /** Records that a step began; steps only move forward. */
  async step(id: string, step: Step): Promise<void> {
    const record = await this.mustGet(id);
    if (record.step === step) return;
    await this.update(id, { step, steps: [...record.steps, { step, at: new Date().toISOString() }] });
  }

  /**
   * Ends a job: a final state, its finish time, and why. A job that already
   * ended (either way) is left as it is and returned so (see UPDATE_JOB).
   * A job that completed or was superseded has no error, whatever an
   * earlier attempt of it failed with.
   *
   * Ending it files it for retention in the same call (UPDATE_JOB); the
   * retention applied next is a second call, whose failure (the connection
   * lost between the two) leaves the job ended and filed, to be trimmed by
   * the app's next finish or the worker's hourly sweep: not a reason to
   * tell the caller (a cancel, a worker recording how a deploy ended) that
   * the job did not end.
   */
  async finish(id: string, state: JobState, extra: Partial<JobRecord> = {}): Promise<JobRecord> {
    if (!FINAL_STATES.has(state)) throw new Error(`${state} is not a final state`);
    const unfailed = state === 'completed' || state === 'superseded' ? { error: null } : {};
    const record = await this.update(id, { state, finishedAt: new Date().toISOString(), ...unfailed, ...extra });
    if (record.state === state) await fileFinishedJob(this.redis, this.keys, record, this.retention).catch(() => 0);
    return record;
  }

  /** Newest first, optionally one app's, state's and trigger's: the first page of {@link page}. */
  async list(options: ListOptions = {}): Promise<JobRecord[]> {
    return (await this.page(options)).jobs;
  }

  /**
   * A page of the history, newest first. Filters read the sorted set of
   * their combination (one range read, whatever the history holds); a
   * search also reads the commit and message of at most SEARCH_SCAN jobs.
   */
  async page(options: ListOptions = {}): Promise<JobPage> {
    const limit = options.limit ?? 20;
    const index = this.keys.jobIndex(options);
    const max = options.before && /^\d{1,15}$/.test(options.before) ? `(${options.before}` : '+inf';
    const search = options.search?.trim().toLowerCase();
    if (search && COMMIT_PREFIX.test(search)) {
      const commits = await this.commitSearch(options, search, limit);
      // A word of hex letters ("defaced", "deadbeef", a ticket number) that starts no commit is looked for in messages.
      if (commits.jobs.length > 0) return commits;
    }
    if (search) return this.search(index, max, search, limit);
    // One more than the page: a page that ends the history (exactly `limit` left) says so, with no next.
    const ids = await this.redis.zrevrangebyscore(index, max, '-inf', 'LIMIT', 0, limit + 1);
    const page = ids.slice(0, limit);
    return { jobs: await this.records(page), next: ids.length > limit ? page.at(-1)! : null };
  }

  /**
   * The newest job of each filter (undefined where none matches), in two
   * round trips however many filters: one pipelined range read of their
   * indexes, then one of the records. The overview asks four per app.
   */
  async newest(filters: ReadonlyArray<Pick<ListOptions, 'app' | 'state' | 'trigger'>>): Promise<Array<JobRecord | undefined>> {
    if (filters.length === 0) return [];
    const ranges = this.redis.pipeline();
    for (const filter of filters) ranges.zrevrangebyscore(this.keys.jobIndex(filter), '+inf', '-inf', 'LIMIT', 0, 1);
    const ids = ((await ranges.exec()) ?? []).map(([err, found]) => {
      if (err) throw err;
      return (found as string[])[0];
    });
    const records = new Map((await this.records([...new Set(ids.filter((id) => id !== undefined))])).map((job) => [job.id, job]));
    return ids.map((id) => (id === undefined ? undefined : records.get(id)));
  }

  /** Jobs of commits starting with `prefix`, from the commit index: the whole history, whatever its age. */
  private async commitSearch(options: ListOptions, prefix: string, limit: number): Promise<JobPage> {
    const before = options.before && /^\d{1,15}$/.test(options.before) ? Number(options.before) : Infinity;
    const members = await this.redis.zrangebylex(this.keys.commits, `[${prefix}`, `(${prefix}~`, 'LIMIT', 0, COMMIT_HITS);
    const ids = members.map((m) => Number(m.slice(m.indexOf(':') + 1))).filter((id) => id < before).sort((a, b) => b - a);
    const jobs: JobRecord[] = [];
    // With filters most records read may be left out: read them SEARCH_CHUNK at a time, not a page at a time (10,000 round trips for limit=1).
    const step = options.app || options.state || options.trigger ? Math.max(limit + 1, SEARCH_CHUNK) : limit + 1;
    for (let i = 0; i < ids.length; i += step) {
      const chunk = ids.slice(i, i + step);
      for (const job of await this.records(chunk.map(String))) {
        if ((options.app && job.app !== options.app) || (options.state && job.state !== options.state) || (options.trigger && job.trigger !== options.trigger)) continue;
        // One more than the page: a next only when there is more.
        if (jobs.length === limit) return { jobs, next: jobs.at(-1)!.id };
        jobs.push(job);
      }
    }
    return { jobs, next: null };
  }

  private async search(index: string, max: string, needle: string, limit: number): Promise<JobPage> {
    const found: string[] = [];
    let scanned = 0;
    let last: string | null = null;
    while (scanned < SEARCH_SCAN) {
      const ids: string[] = await this.redis.zrevrangebyscore(index, last ? `(${last}` : max, '-inf', 'LIMIT', 0, Math.min(SEARCH_CHUNK, SEARCH_SCAN - scanned));
      if (ids.length === 0) return { jobs: await this.records(found), next: null };
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hmget(this.keys.job(id), 'sha', 'push');
      const rows = (await pipeline.exec()) ?? [];
      for (let i = 0; i < ids.length; i++) {
        const [sha, push] = (rows[i]?.[1] ?? []) as Array<string | null>;
        if (matches(needle, sha, push)) found.push(ids[i]!);
        if (found.length === limit) return { jobs: await this.records(found), next: ids[i]! };
      }
      scanned += ids.length;
      last = ids.at(-1)!;
      if (ids.length < SEARCH_CHUNK) return { jobs: await this.records(found), next: null };
    }
    return { jobs: await this.records(found), next: last };
  }

  /** The records of these ids, in order, in one round trip; one gone meanwhile (retention) is left out. */
  async records(ids: readonly string[]): Promise<JobRecord[]> {
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.job(id));
    const out: JobRecord[] = [];
    for (const [, hash] of (await pipeline.exec()) ?? []) {
      if (hash && Object.keys(hash).length > 0) out.push(decode(hash as Record<string, string>));
    }
    return out;
  }

  /**
   * Applies retention to every app's history in batches (see
   * sweepRetention); nothing when this store keeps everything.
   */
  async sweep(options: SweepOptions = {}): Promise<SweepResult> {
    if (!this.retention) return { removed: 0, calls: 0, longestCallMs: 0 };
    return sweepRetention(this.redis, this.keys, this.retention, options);
  }

  /**
   * Files jobs an older Slipway recorded (before the indexes by state,
   * trigger and commit) in those indexes, once per history; paced like the
   * sweep (see indexHistory). The worker runs it before its first sweep.
   */
  async indexHistory(options: { signal?: AbortSignal; batch?: number } = {}): Promise<{ calls: number; longestCallMs: number }> {
    return indexHistory(this.redis, this.keys, options);
  }

  /**
   * Job ids from now on above `id`: a Redis that lost its data counts them
   * from 1 again, and a new job bearing the id of a release etcd still
   * names would be taken for it. Whether the counter was below.
   */
  async raiseJobIdsPast(id: number): Promise<boolean> {
    return (await this.redis.eval(RAISE_TO, 1, this.keys.seq, String(Math.floor(id)))) === 1;
  }

  /** The newest job id given so far ('0' before the first): what a request that reads the branch records as `chosenAfter`. */
  async lastJobId(): Promise<string> {
    return (await this.redis.get(this.keys.seq)) ?? '0';
  }

  /**
   * The job that makes `id` pointless to deploy, or null. By arrival: the
   * newest job of the app after it that is waiting, running or already live
   * (failed, cancelled and superseded ones never went live). By push: a
   * webhook's push names the head it replaced (`before`), so among the
   * app's recent pushes each commit's predecessors are known; a push that
   * arrived later but whose commit this one's chain of `before`s reaches
   * is older (forges deliver concurrent pushes in any order) and does not
   * supersede it, and a push that arrived earlier but is newer by that
   * chain does, whether waiting, running (an attempt that died, maybe after
   * its switch, runs again) or live. An older commit is never deployed over a newer push,
   * whatever order the queue hands jobs out in.
   *
   * A job whose commit was chosen by reading the branch (`chosenAfter`:
   * `slipway deploy` of the branch, a retry) is placed on that chain only
   * against pushes queued after its choice: one whose chain reaches the
   * chosen commit was pushed after the branch was read, so it is newer
   * even when it reached the queue first. A push the chain places before
   * the chosen commit is older whenever it arrived (a late redelivery):
   * it neither supersedes the choice nor runs while the choice is waiting,
   * running or live. Against anything else, arrival decides (the
   * operator's request is the newest by intent: a branch moved back
   * without a webhook is deployed as it is).
   *
   * Jobs in `passOver` are not counted (the worker's own doubts: a forced
   * push whose branch is elsewhere).
   */
  async supersededBy(app: string, id: string, passOver: ReadonlySet<string> = new Set()): Promise<string | null> {
    const self = await this.get(id);
    const isPush = self?.trigger === 'webhook' && !!self.push?.before;
    if (!self?.sha || (!isPush && self.chosenAfter === undefined)) return this.newerByArrival(app, id, passOver);
    const recent = await this.list({ app, limit: PUSH_CHAIN_JOBS });
    const before = new Map(recent.flatMap((j) => (j.trigger === 'webhook' && j.sha && j.push?.before ? [[j.sha, j.push.before] as const] : [])));
    /**
     * Whether `older`'s commit is on `newer`'s chain of befores. A chain that comes back to `newer`'s own
     * commit (a forced push moved the branch back, and it was pushed forward again) orders nothing.
     */
    const precedes = (older: JobRecord, newer: JobRecord) => {
      // A commit chosen from the branch has no push of its own (a CLI deploy): its place is the push that brought it.
      let at = newer.push?.before ?? (newer.sha ? before.get(newer.sha) : undefined);
      for (let hop = 0; at && at !== newer.sha && hop < PUSH_CHAIN_JOBS; hop++, at = before.get(at)) if (at === older.sha) return true;
      return false;
    };
    /**
     * `forced` moved the branch off `push`'s commit (the worker takes its word only where the branch bears it
     * out), and `push` did not come after `forced` (from its commit, or by a chain of pushes from it: the same
     * commit pushed, or forced, back again).
     */
    const replacedBy = (push: JobRecord, forced: JobRecord) =>
      push.trigger === 'webhook' && forced.trigger === 'webhook' && forced.push?.forced === true && push.sha !== null
      && forced.push.before === push.sha && !cameAfter(push, forced);
    /** Whether `push`'s chain of befores, through pushes that arrived after `forced`, reaches `forced`'s commit. */
    const cameAfter = (push: JobRecord, forced: JobRecord) => {
      const later = new Map(recent.flatMap((j) => (Number(j.id) > Number(forced.id) && j.trigger === 'webhook' && j.sha && j.push?.before ? [[j.sha, j.push.before] as const] : [])));
      let at = push.push?.before ?? undefined;
      for (let hop = 0; at && hop < PUSH_CHAIN_JOBS; hop++, at = later.get(at)) if (at === forced.sha) return true;
      return false;
    };
    // A forced push is the newest by intent (the branch was moved back on purpose), whatever the chain says.
    const byChain = (job: JobRecord) => job.trigger === 'webhook' && job.sha !== null && !job.push?.forced && !self.push?.forced;
    /**
     * `choice` read the branch before `push` was queued, so a chain from `push` back to the chosen commit
     * means the branch moved on after the choice (forced or not: a forced push names the head it replaced).
     */
    const pushedAfterChoice = (choice: JobRecord, push: JobRecord) =>
      choice.chosenAfter !== undefined && sameBranch(choice.ref, push.ref) && push.trigger === 'webhook' && Number(push.id) > Number(choice.chosenAfter);
    /**
     * A push of the choice's branch whose commit the chain places before the chosen one is older, whenever it
     * arrived (a forge's late redelivery of an earlier push): it never supersedes the choice, and the choice,
     * waiting, running or live, supersedes it. A forced push is newest by intent, as above.
     */
    const olderThanChoice = (push: JobRecord, choice: JobRecord) =>
      choice.chosenAfter !== undefined && choice.sha !== null && push.trigger === 'webhook' && !push.push?.forced && sameBranch(choice.ref, push.ref) && precedes(push, choice);
    for (const job of recent) {
      if (job.id === id || !SUPERSEDING.has(job.state) || passOver.has(job.id)) continue;
      if (Number(job.id) > Number(id)) {
        if (isPush && (byChain(job) || pushedAfterChoice(job, self)) && precedes(job, self)) continue;
        // The push this forced one replaced, delivered after it: older, whatever the arrival.
        if (replacedBy(job, self)) continue;
        if (olderThanChoice(job, self)) continue;
        return job.id;
      }
      // Running too: under the app's lease, an earlier job still `active` is an attempt that died (after its switch,
      // maybe) and runs again; and live, should the live commit's ancestry have gone unrecorded.
      if (isPush && byChain(job) && precedes(self, job)) return job.id;
      if (replacedBy(self, job)) return job.id;
      if (pushedAfterChoice(self, job) && precedes(self, job)) return job.id;
      if (olderThanChoice(self, job)) return job.id;
    }
    return recent.some((j) => j.id === id) ? null : this.newerByArrival(app, id, passOver);
  }

  /**
   * The newest job of the app after `id` that is waiting, running or live:
   * newest first, a page of states per round trip (after a long run of
   * failures there are many to pass over).
   */
  private async newerByArrival(app: string, id: string, passOver: ReadonlySet<string>): Promise<string | null> {
    const PAGE = 200;
    // Paged by score (ids), not by offset: jobs removed meanwhile (retention) would shift an offset past one.
    for (let max = '+inf'; ;) {
      const page = await this.redis.zrevrangebyscore(this.keys.byApp(app), max, `(${Number(id)}`, 'LIMIT', 0, PAGE);
      const candidates = page.filter((candidate) => !passOver.has(candidate));
      // Sent together: one round trip for the page.
      const states = await Promise.all(candidates.map((candidate) => this.redis.hget(this.keys.job(candidate), 'state')));
      const found = candidates.findIndex((_, i) => states[i] !== null && SUPERSEDING.has(JSON.parse(states[i]!) as JobState));
      if (found >= 0) return candidates[found]!;
      if (page.length < PAGE) return null;
      max = `(${page.at(-1)!}`;
    }
  }

  async waitingIds(app: string): Promise<string[]> {
    return this.redis.zrange(this.keys.waiting(app), 0, -1);
  }

  /**
   * Appends lines to a job's log once, even when ioredis sends them again
   * after a reconnect; returns the number of the last one (1-based). A
   * writer that appends several batches names itself and numbers them from
   * 1 (each batch after the one before it resolved); one without
   * `writer` appends a single batch.
   */
  async appendLog(id: string, lines: readonly string[], writer: LogWriter = { name: randomUUID(), batch: 1 }, options: { closingTail?: ClosingTail } = {}): Promise<number> {
    if (lines.length === 0) return this.redis.llen(this.keys.log(id));
    const commands = this.redis as unknown as Record<'slipwayAppendLog' | 'slipwayAppendLogClosingTail', (...a: Array<string | number>) => Promise<number>>;
    // Closing the tail: these lines hold the log's kept end, whose copy is then dropped in the same step (see pushLogTail).
    const closing = options.closingTail;
    if (closing) return commands.slipwayAppendLogClosingTail(this.keys.log(id), this.keys.logWriters(id), this.keys.logTail(id), this.keys.logTailMeta(id), writer.name, writer.batch, closing.from, closing.copied, ...lines);
    return commands.slipwayAppendLog(this.keys.log(id), this.keys.logWriters(id), writer.name, writer.batch, ...lines);
  }

  /**
   * Adds lines to the end a capped log keeps while its job runs (JobLog):
   * at most `maxLines` lines and `maxBytes` bytes, the oldest going first.
   * Apart from the log, which only grows: the log gets it when the job's
   * attempt ends (appendLog `closingTail`), or, should its worker die
   * first, when the next attempt opens the log (takeLogTail). False when
   * another attempt took the job's log over: the lines did not go in.
   */
  async pushLogTail(id: string, writer: LogWriter, lines: readonly string[], maxLines: number, maxBytes: number): Promise<boolean> {
    if (lines.length === 0) return true;
    const commands = this.redis as unknown as { slipwayPushLogTail: (...a: Array<string | number>) => Promise<number> };
    const kept = await commands.slipwayPushLogTail(this.keys.logTail(id), this.keys.logTailMeta(id), maxLines, maxBytes, LOG_TAIL_TTL_S, writer.name, writer.batch, ...lines);
    return kept !== -1;
  }

  /**
   * Moves a kept end no attempt added into the log, after `header`, in one
   * step, and makes `writer` the owner of the job's kept end from now on;
   * returns how many lines moved.
   */
  async takeLogTail(id: string, writer: string, header: string): Promise<number> {
    const commands = this.redis as unknown as { slipwayTakeLogTail: (...a: Array<string | number>) => Promise<number> };
    return commands.slipwayTakeLogTail(this.keys.logTail(id), this.keys.logTailMeta(id), this.keys.log(id), header, writer, LOG_TAIL_TTL_S);
  }

  /** Lines `from`..`to` (1-based, inclusive; `to` -1 = the end). */
  async readLog(id: string, from = 1, to = -1): Promise<string[]> {
    return this.redis.lrange(this.keys.log(id), Math.max(0, from - 1), to === -1 ? -1 : to - 1);
  }

  /**
   * Like {@link readLog}, but ending after the line that brings what it
   * returns to `maxBytes` (at least one line): for readers that hold a
   * read while a slow client takes it (the dashboard's streams, pages and
   * downloads, `slipway logs`), whatever the lines' length.
   */
  async readLogBounded(id: string, from: number, to: number, maxBytes: number): Promise<string[]> {
    const commands = this.redis as unknown as { slipwayReadLogBytes: (...a: Array<string | number>) => Promise<string[]> };
    return commands.slipwayReadLogBytes(this.keys.log(id), Math.max(0, from - 1), to === -1 ? -1 : to - 1, maxBytes);
  }

  async logLength(id: string): Promise<number> {
    return this.redis.llen(this.keys.log(id));
  }

  private async publish(record: JobRecord): Promise<void> {
    const event: JobEvent = { id: record.id, app: record.app, state: record.state, step: record.step };
    await this.redis.publish(this.keys.events, JSON.stringify(event));
  }
}

/** Whether a job's commit starts with `needle` or its message holds it (both lower case). */
function matches(needle: string, shaField: string | null | undefined, pushField: string | null | undefined): boolean {
  const sha = shaField ? (JSON.parse(shaField) as string | null) : null;
  if (sha?.startsWith(needle)) return true;
  if (!pushField) return false;
  // The stored JSON holds the message's text as is unless it has a character JSON escapes: a cheap test before parsing.
  if (!/["\\\u0000-\u001f]/.test(needle) && !pushField.toLowerCase().includes(needle)) return false;
  const message = (JSON.parse(pushField) as Push | null)?.message;
  return message?.toLowerCase().includes(needle) ?? false;
}

/** Whether two jobs' refs name the same branch (a record written before refs were kept as names may say `refs/heads/<branch>`). */
function sameBranch(a: string | null, b: string | null): boolean {
  return a !== null && b !== null && (branchOfRef(a) ?? a) === (branchOfRef(b) ?? b);
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
