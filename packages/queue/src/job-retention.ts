import type { Redis } from 'ioredis';
import type { JobRecord } from './job-types.js';
import type { Keys } from './redis.js';

/*
 * Job history retention (`jobs.keep_per_app`, `jobs.keep_days`): each time
 * a job finishes it is filed among its app's finished jobs, and what is
 * both beyond the newest `keepPerApp` of them and older than `keepDays`
 * goes, record, log and all, in the same round trip.
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
 * Records a job as finished (in the app's finished set by id and by finish
 * time) and applies retention, atomically, in one round trip. Its cost is
 * O(log n) plus the smaller of two sets it may have to walk: the finished
 * jobs beyond `keep` (by id) or those older than the cutoff (by time). In
 * steady state both hold about the one job that just crossed the line.
 * Jobs finished before finish times were indexed are dated once from their
 * records' `finishedAt`.
 * KEYS: finished (by id), finished-at (by time), all jobs, the app's jobs.
 * ARGV: id, finish time (ms), keep (-1: retention off), cutoff (ms; a job
 * finished at or before it is old enough), job key prefix, then the
 * suffixes of the keys that go with a job (`:log`, ...).
 * Returns the number of jobs removed.
 */
const FINISH_AND_TRIM = `
local byId, byTime = KEYS[1], KEYS[2]
local id, keep, cutoff, jobPrefix = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
redis.call('zadd', byId, id, id)
redis.call('zadd', byTime, ARGV[2], id)
if keep < 0 then return 0 end
local excess = redis.call('zcard', byId) - keep
if excess <= 0 then return 0 end

if redis.call('zcard', byTime) < redis.call('zcard', byId) then
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
  for _, undated in ipairs(redis.call('zrange', byId, 0, -1)) do
    if not redis.call('zscore', byTime, undated) then
      redis.call('zadd', byTime, isoMs(redis.call('hget', jobPrefix .. undated, 'finishedAt')), undated)
    end
  end
end

local old = redis.call('zcount', byTime, '-inf', cutoff)
if old == 0 then return 0 end
local victims = {}
if excess <= old then
  for _, candidate in ipairs(redis.call('zrange', byId, 0, excess - 1)) do
    local at = redis.call('zscore', byTime, candidate)
    if at and tonumber(at) <= cutoff then victims[#victims + 1] = candidate end
  end
else
  local newestBeyond = tonumber(redis.call('zrange', byId, excess - 1, excess - 1, 'WITHSCORES')[2])
  for _, candidate in ipairs(redis.call('zrangebyscore', byTime, '-inf', cutoff)) do
    local seq = redis.call('zscore', byId, candidate)
    if seq and tonumber(seq) <= newestBeyond then victims[#victims + 1] = candidate end
  end
end
for _, victim in ipairs(victims) do
  local job = jobPrefix .. victim
  redis.call('unlink', job)
  for i = 6, #ARGV do redis.call('unlink', job .. ARGV[i]) end
  redis.call('zrem', byId, victim)
  redis.call('zrem', byTime, victim)
  redis.call('zrem', KEYS[3], victim)
  redis.call('zrem', KEYS[4], victim)
end
return #victims`;

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Files a job that just finished under its app's finished jobs (by id and
 * by finish time) and applies `retention` (null: nothing is removed), in
 * one script call. Returns the number of jobs removed.
 */
export async function fileFinishedJob(redis: Redis, keys: Keys, record: JobRecord, retention: JobRetention | null): Promise<number> {
  const { app, id } = record;
  const finishedAt = record.finishedAt ? Date.parse(record.finishedAt) : Date.now();
  const jobKey = keys.job(id);
  const related = [keys.log(id), keys.cancel(id), keys.cancelReported(id)].map((key) => key.slice(jobKey.length));
  const commands = redis as unknown as { slipwayFinishAndTrim?: (...a: Array<string | number>) => Promise<number> };
  if (!commands.slipwayFinishAndTrim) redis.defineCommand('slipwayFinishAndTrim', { lua: FINISH_AND_TRIM });
  return commands.slipwayFinishAndTrim!(
    4, keys.finished(app), keys.finishedAt(app), keys.all, keys.byApp(app),
    id, Number.isFinite(finishedAt) ? finishedAt : Date.now(),
    retention ? retention.keepPerApp : -1,
    retention ? Date.now() - retention.keepDays * DAY_MS : 0,
    keys.job(''), ...related,
  );
}
