import type { Redis } from 'ioredis';
import { FINAL_STATES, type JobRecord } from './job-types.js';
import type { Keys } from './redis.js';

/*
 * Job history retention (`jobs.keep_per_app`, `jobs.keep_days`): each time
 * a job finishes it is filed among its app's finished jobs (with its new
 * state, in the same script), and then what is both beyond the newest
 * `keepPerApp` of them and older than `keepDays` goes, record, log and
 * indexes, a bounded batch at a time; a sweep (the worker's, at start and hourly) walks every app's
 * history the same way, batch by batch. Before its first sweep a worker
 * files jobs recorded by an older Slipway (before the indexes by state,
 * trigger and commit) in those indexes, once.
 */

/** Which finished jobs an app's history keeps. */
export interface JobRetention {
  /** The newest this many finished jobs of each app are kept (`jobs.keep_per_app`). */
  keepPerApp: number;
  /** ... and every finished job younger than this many days (`jobs.keep_days`). */
  keepDays: number;
}

/** The config's defaults: 200 jobs per app, and 30 days. */
export const DEFAULT_RETENTION: Readonly<JobRetention> = { keepPerApp: 200, keepDays: 30 };

/**
 * Lua: the sorted sets a job's id sits in (see `keys.jobIndex`): the four
 * that do not depend on its state, then the four that do. Values come as
 * the record stores them (JSON strings), or bare.
 */
export const LUA_INDEX_KEYS = `
local function bare(value)
  return string.match(value or '', '^"(.*)"$') or value or ''
end
local function indexKeys(base, app, state, trigger)
  local a, s, t = 'app:' .. bare(app), 'state:' .. bare(state), 'trigger:' .. bare(trigger)
  return {base .. 'all', base .. a, base .. t, base .. a .. ':' .. t},
         {base .. s, base .. a .. ':' .. s, base .. s .. ':' .. t, base .. a .. ':' .. s .. ':' .. t}
end
`;

/** Lua: an ISO 8601 UTC time (`2026-12-04T21:33:22.000Z`) as ms since the epoch, to the second; 0 when it is not one. */
export const LUA_ISO_MS = `
local function isoMs(text)
  local y, m, d, hh, mm, ss = string.match(text or '', '(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)')
  if not y then return 0 end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  return ((days * 24 + tonumber(hh)) * 60 + tonumber(mm)) * 60000 + tonumber(ss) * 1000
end
`;

/**
 * Records a job as finished (in the app's finished set by id and by finish
 * time) and applies retention to at most `batch` candidates, atomically:
 * no call runs long, whatever the history holds. Its cost is O(batch log n)
 * over the smaller of two sets: the finished jobs beyond `keep` (by id) or
 * those older than the cutoff (by time). Both shrink by the same jobs as
 * they go, so successive calls walk the same one; `offset` skips the
 * candidates earlier calls kept. In steady state a finish removes about the
 * one job that just crossed the line. The job being filed is never removed
 * by its own call (one finishing after newer ones did, with keep_days 0,
 * would be gone before whoever waits on it read how it ended); a later
 * call does. A job finished before finish times were indexed has none
 * until indexHistory dates it, and is kept until then. The job that made
 * the app's live release is kept however old: `slipway status` and the
 * dashboard name it, and its log is how what serves was built and tested.
 * KEYS: finished (by id), finished-at (by time), the app's live record.
 * ARGV: id ('': only trim), finish time (ms), keep (-1: retention off),
 * cutoff (ms; a job finished at or before it is old enough), job key
 * prefix, index base, app, batch, offset, then the suffixes of the keys
 * that go with a job (`:log`, ...).
 * Returns {removed, next offset, 1 when candidates remain}.
 */
const FINISH_AND_TRIM = LUA_INDEX_KEYS + `
local byId, byTime = KEYS[1], KEYS[2]
local id, keep, cutoff, jobPrefix, base, app = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local batch, offset = tonumber(ARGV[8]), tonumber(ARGV[9])
local live = string.match(redis.call('get', KEYS[3]) or '', '"job":"(%d+)"')
if id ~= '' then
  redis.call('zadd', byId, id, id)
  redis.call('zadd', byTime, ARGV[2], id)
end
if keep < 0 then return {0, 0, 0} end
local excess = redis.call('zcard', byId) - keep
if excess <= 0 then return {0, 0, 0} end

local old = redis.call('zcount', byTime, '-inf', cutoff)
if old == 0 then return {0, 0, 0} end
local victims, kept, more = {}, 0, 0
if excess <= old then
  local stop = math.min(excess, offset + batch) - 1
  if stop >= offset then
    for _, candidate in ipairs(redis.call('zrange', byId, offset, stop)) do
      local at = redis.call('zscore', byTime, candidate)
      if at and tonumber(at) <= cutoff and candidate ~= id and candidate ~= live then victims[#victims + 1] = candidate else kept = kept + 1 end
    end
  end
  if stop + 1 < excess then more = 1 end
else
  local newestBeyond = tonumber(redis.call('zrange', byId, excess - 1, excess - 1, 'WITHSCORES')[2])
  local candidates = redis.call('zrangebyscore', byTime, '-inf', cutoff, 'LIMIT', offset, batch)
  for _, candidate in ipairs(candidates) do
    local seq = redis.call('zscore', byId, candidate)
    if seq and tonumber(seq) <= newestBeyond and candidate ~= id and candidate ~= live then victims[#victims + 1] = candidate else kept = kept + 1 end
  end
  if offset + #candidates < old then more = 1 end
end
for _, victim in ipairs(victims) do
  local job = jobPrefix .. victim
  local fields = redis.call('hmget', job, 'state', 'trigger', 'sha')
  if fields[3] and bare(fields[3]) ~= 'null' then redis.call('zrem', base .. 'shas', bare(fields[3]) .. ':' .. victim) end
  local fixed, byState = indexKeys(base, app, fields[1], fields[2])
  for _, key in ipairs(fixed) do redis.call('zrem', key, victim) end
  for _, key in ipairs(byState) do redis.call('zrem', key, victim) end
  redis.call('unlink', job)
  for i = 10, #ARGV do redis.call('unlink', job .. ARGV[i]) end
  redis.call('zrem', byId, victim)
  redis.call('zrem', byTime, victim)
end
return {#victims, offset + kept, more}`;

/**
 * Candidates one retention call looks at, at most: what bounds the time
 * Redis spends in it (each victim is ~16 commands: its record, log and nine
 * index entries), and so the longest any other client waits behind it.
 */
export const DEFAULT_SWEEP_BATCH = 50;
/**
 * Redis's share a sweep may take: after each call it pauses for what the
 * call took, times (1 - share) / share (twice as long, at a third), so
 * Redis serves other clients at least two thirds of the time whatever the
 * machine's load (a fixed pause starved them on a loaded machine, where
 * each call took 20 times longer than on a quiet one).
 */
const SWEEP_SHARE = 1 / 3;
/** The shortest pause between two calls of a sweep. */
const SWEEP_MIN_PAUSE_MS = 2;

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Files up to `batch` jobs of the `all` index, from id `from` up, in every
 * index a job of that app, state and trigger belongs in, the commit index,
 * the apps set, and its app's finished sets (by id, and by the finish time
 * of its record, else its creation time, when it has none) when it has ended: what records written
 * before those indexes existed lack. Idempotent; an id whose record
 * is gone leaves the `all` index.
 * KEYS: all. ARGV: job key prefix, index base, first id, batch, then
 * the final states (FINAL_STATES).
 * Returns the id to go on from, or false at the end of the index.
 */
const INDEX_HISTORY = LUA_INDEX_KEYS + LUA_ISO_MS + `
local jobPrefix, base, from, batch = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local final = {}
for i = 5, #ARGV do final[ARGV[i]] = true end
local ids = redis.call('zrangebyscore', KEYS[1], from, '+inf', 'LIMIT', 0, batch)
for _, id in ipairs(ids) do
  local f = redis.call('hmget', jobPrefix .. id, 'app', 'state', 'trigger', 'sha')
  if not f[1] then
    redis.call('zrem', KEYS[1], id)
  else
    local app, sha = bare(f[1]), bare(f[4])
    local fixed, byState = indexKeys(base, f[1], f[2], f[3])
    for _, key in ipairs(fixed) do redis.call('zadd', key, id, id) end
    for _, key in ipairs(byState) do redis.call('zadd', key, id, id) end
    redis.call('sadd', base .. 'apps', app)
    if sha ~= '' and sha ~= 'null' then redis.call('zadd', base .. 'shas', 0, sha .. ':' .. id) end
    if final[bare(f[2])] then
      redis.call('zadd', base .. 'finished:' .. app, id, id)
      if not redis.call('zscore', base .. 'finished-at:' .. app, id) then
        -- Dated by its end, else by its creation; one with neither is not dated 1970 (old enough to go at once): kept.
        local dates = redis.call('hmget', jobPrefix .. id, 'finishedAt', 'createdAt')
        local at = isoMs(bare(dates[1]))
        if at == 0 then at = isoMs(bare(dates[2])) end
        if at > 0 then redis.call('zadd', base .. 'finished-at:' .. app, at, id) end
      end
    end
  end
end
if #ids < batch then return false end
return tostring(tonumber(ids[#ids]) + 1)`;

/** Defines FINISH_AND_TRIM and INDEX_HISTORY on `redis` once (see defineJobScripts for why before the first command). */
export function defineRetentionScript(redis: Redis): void {
  const defined = redis as unknown as Record<string, unknown>;
  if (!defined.slipwayFinishAndTrim) redis.defineCommand('slipwayFinishAndTrim', { lua: FINISH_AND_TRIM });
  if (!defined.slipwayIndexHistory) redis.defineCommand('slipwayIndexHistory', { lua: INDEX_HISTORY });
}

/** One FINISH_AND_TRIM call for `app`: after job `id` finished, or ('') for a sweep. */
async function trim(redis: Redis, keys: Keys, app: string, id: string, finishedAt: number, retention: JobRetention | null, batch: number, offset: number): Promise<[number, number, number]> {
  const jobKey = keys.job('0');
  const related = [keys.log('0'), keys.logWriters('0'), keys.logTail('0'), keys.logTailMeta('0'), keys.cancel('0'), keys.endReported('0')].map((key) => key.slice(jobKey.length));
  defineRetentionScript(redis);
  const commands = redis as unknown as { slipwayFinishAndTrim: (...a: Array<string | number>) => Promise<[number, number, number]> };
  return commands.slipwayFinishAndTrim(
    3, keys.finished(app), keys.finishedAt(app), keys.live(app),
    id, finishedAt,
    retention ? retention.keepPerApp : -1,
    retention ? Date.now() - retention.keepDays * DAY_MS : 0,
    keys.job(''), keys.indexBase, app, batch, offset, ...related,
  );
}

/**
 * Files a job that just finished under its app's finished jobs (by id and
 * by finish time) and applies `retention` (null: nothing is removed) to one
 * batch, in one script call. Returns the number of jobs removed; what the
 * batch left (after `jobs.keep_per_app` was lowered, say) is the sweep's.
 */
export async function fileFinishedJob(redis: Redis, keys: Keys, record: JobRecord, retention: JobRetention | null): Promise<number> {
  const finishedAt = record.finishedAt ? Date.parse(record.finishedAt) : Date.now();
  const [removed] = await trim(redis, keys, record.app, record.id, Number.isFinite(finishedAt) ? finishedAt : Date.now(), retention, DEFAULT_SWEEP_BATCH, 0);
  return removed;
}

export interface SweepOptions {
  /** Apps to sweep besides those with jobs recorded in `keys.apps` (the configured ones). */
  apps?: readonly string[];
  /** Candidates per script call. Default {@link DEFAULT_SWEEP_BATCH}. */
  batch?: number;
  /** Stops between batches when aborted. */
  signal?: AbortSignal;
}

export interface SweepResult {
  removed: number;
  /** Script calls made: each looked at most `batch` candidates. */
  calls: number;
  /** The longest single call, as the sweep saw it (round trip included). */
  longestCallMs: number;
}

/**
 * Applies retention to every app's whole history, a batch per script call
 * and after each a pause twice as long as the call took (SWEEP_SHARE), so
 * that the receiver's and the worker's commands are served between batches,
 * at least two thirds of Redis's time, rather than queued behind one long
 * call. For what finishing jobs do not trim: an app that no longer
 * deploys, a lowered `keep_per_app`, history from before retention.
 */
export async function sweepRetention(redis: Redis, keys: Keys, retention: JobRetention, options: SweepOptions = {}): Promise<SweepResult> {
  const batch = options.batch ?? DEFAULT_SWEEP_BATCH;
  const apps = new Set([...(await redis.smembers(keys.apps)), ...(options.apps ?? [])]);
  const result: SweepResult = { removed: 0, calls: 0, longestCallMs: 0 };
  const pace = pacer(result);
  for (const app of apps) {
    for (let offset = 0, more = 1; more === 1 && !options.signal?.aborted;) {
      const [removed, next, remaining] = await pace(() => trim(redis, keys, app, '', 0, retention, batch, offset), (r) => r[0] > 0);
      result.removed += removed;
      [offset, more] = [next, remaining];
    }
  }
  return result;
}

/**
 * Runs script calls one after the other at SWEEP_SHARE of Redis: before
 * each, a pause twice as long as the last costly one took (`costly` says
 * which were: an app with nothing to trim is one cheap call). Counts calls
 * and the longest in `stats`.
 */
function pacer(stats: { calls: number; longestCallMs: number }) {
  let pause = 0;
  return async <T>(call: () => Promise<T>, costly: (result: T) => boolean = () => true): Promise<T> => {
    if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
    const started = performance.now();
    const result = await call();
    const took = performance.now() - started;
    stats.calls++;
    stats.longestCallMs = Math.max(stats.longestCallMs, took);
    pause = costly(result) ? Math.max(SWEEP_MIN_PAUSE_MS, took * (1 - SWEEP_SHARE) / SWEEP_SHARE) : 0;
    return result;
  };
}

/** Jobs INDEX_HISTORY files per call. */
const INDEX_BATCH = 500;

/**
 * Files jobs recorded before the history's indexes (by state, trigger and
 * commit; the finished sets retention reads) existed in them, walking the
 * `all` index a batch per call, paced like the sweep; marks the history
 * indexed when done (`keys.indexed`), after which it returns at once.
 * Resumes from the start if stopped (the calls are idempotent). Returns
 * the calls made (0: already indexed; aborted: not finished).
 */
export async function indexHistory(redis: Redis, keys: Keys, options: { signal?: AbortSignal; batch?: number } = {}): Promise<{ calls: number; longestCallMs: number }> {
  const stats = { calls: 0, longestCallMs: 0 };
  if (await redis.get(keys.indexed) !== null) return stats;
  defineRetentionScript(redis);
  const commands = redis as unknown as { slipwayIndexHistory: (...a: Array<string | number>) => Promise<string | null> };
  const pace = pacer(stats);
  for (let from: string | null = '0'; from !== null;) {
    if (options.signal?.aborted) return stats;
    const start: string = from;
    from = await pace(() => commands.slipwayIndexHistory(1, keys.all, keys.job(''), keys.indexBase, start, options.batch ?? INDEX_BATCH, ...FINAL_STATES));
  }
  await redis.set(keys.indexed, new Date().toISOString());
  return stats;
}
