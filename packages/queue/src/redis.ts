import { Redis, type RedisOptions } from 'ioredis';
import { scrubSecrets } from '@slipway/core/logger';
import { firstLine, UnavailableError } from '@slipway/core/slipway-error';

export type { Redis };

/*
 * Redis as Slipway uses it: how to connect (a producer fails fast, a worker
 * waits), what "Redis is not there" reads as (one UnavailableError), how
 * its URL is shown, and every key Slipway keeps there besides BullMQ's own.
 */

/**
 * A Redis client for Slipway. `role` decides how it behaves while Redis is
 * away: a `producer` (receiver, CLI) fails commands at once so a webhook can
 * be answered 503 instead of hanging; a `worker` (BullMQ's blocking calls)
 * waits and reconnects forever, as BullMQ requires.
 */
export function connectRedis(url: string, role: 'producer' | 'worker', options: RedisOptions = {}): Redis {
  const common: RedisOptions = {
    lazyConnect: false,
    connectTimeout: 2000,
    // Reconnect quickly and forever: Redis coming back must heal everything without a restart.
    retryStrategy: (times) => Math.min(100 * times, 1000),
    ...options,
  };
  const redis = role === 'producer'
    ? new Redis(url, { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
    : new Redis(url, { ...common, maxRetriesPerRequest: null, enableReadyCheck: true });
  // Errors surface through the commands that fail; an unhandled 'error' event would kill the process.
  redis.on('error', () => {});
  return redis;
}

/**
 * Resolves once `redis` (from connectRedis, with `url`) is ready; else
 * rejects, within `timeoutMs` or when the client gives up reconnecting,
 * with an UnavailableError that says why in Redis's or the system's words
 * (a wrong password is not a refused connection), scrubbed.
 */
export function redisReady(redis: Redis, url: string, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    let lastError: string | undefined;
    const noteError = (err: Error) => void (lastError = scrubSecrets(firstLine(err), [url]));
    const settle = (why: string | null) => {
      clearTimeout(timer);
      redis.off('error', noteError);
      redis.off('ready', onReady);
      redis.off('end', onEnd);
      if (why === null) resolve();
      else reject(new UnavailableError('redis', `cannot reach Redis at ${redisForDisplay(url)} (${why})`));
    };
    const onReady = () => settle(null);
    const onEnd = () => settle(lastError ?? 'connection refused');
    redis.on('error', noteError);
    redis.once('ready', onReady);
    redis.once('end', onEnd);
    const timer = setTimeout(() => settle(`no answer within ${timeoutMs} ms${lastError ? `: ${lastError}` : ''}`), timeoutMs);
  });
}

/** A Redis URL fit for a message or a log line: its password (and user) replaced by `***`. */
export function redisForDisplay(url: string): string {
  return scrubSecrets(url);
}

const CONNECTION_ERROR = /Connection is closed|enableOfflineQueue|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|MaxRetriesPerRequest|connect ETIMEDOUT|Stream isn't writeable|Reached the max retries/i;

/**
 * Redis there but refusing commands for a while: out of memory under
 * noeviction, a read-only replica (after a failover), busy with a long
 * script, loading its data, unable to persist. Like an unreachable Redis,
 * a reason to answer 503 and retry, not a bug.
 */
const REFUSING = /^(OOM|READONLY|BUSY|LOADING|MASTERDOWN|NOREPLICAS|MISCONF|TRYAGAIN|CLUSTERDOWN) /;

/** A timer this much late means the event loop was held up, not that Redis was slow (see withRedis). */
const STALL_MS = 50;

/**
 * Runs `operation`, turning "Redis is not there" (in whatever words ioredis
 * uses) and Redis refusing commands for a while (see REFUSING) into one
 * UnavailableError, so callers answer 503 or retry instead of parsing
 * messages. Fails at once when the connection is known to be down
 * rather than waiting on it, and after `timeoutMs` without an answer (plus,
 * once, however long this process itself stalled past the deadline).
 */
export async function withRedis<T>(redis: Redis, operation: () => Promise<T>, timeoutMs = 3000): Promise<T> {
  if (redis.status !== 'ready') throw new UnavailableError('redis', `Redis is unreachable (${redis.status})`);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      operation(),
      new Promise<never>((_, reject) => {
        const due = performance.now() + timeoutMs;
        timer = setTimeout(() => {
          // Fired late, this process was busy (a large body parsed, a GC) while the answer may have come: that time is
          // given back once, so our own stall is not reported as Redis not answering.
          const stalled = performance.now() - due;
          const giveUp = () => reject(new UnavailableError('redis', `Redis did not answer within ${timeoutMs} ms`));
          if (stalled > STALL_MS) timer = setTimeout(giveUp, Math.min(stalled, timeoutMs));
          else giveUp();
        }, timeoutMs);
      }),
    ]);
  } catch (err) {
    if (err instanceof UnavailableError) throw err;
    // ioredis keeps the failed command's arguments on its error (a batch of webhooks' records, say): never logged.
    const command = (err as { command?: { name?: string; args?: unknown } }).command;
    if (command) (err as { command?: unknown }).command = { name: command.name };
    const message = (err as Error).message ?? '';
    if (redis.status !== 'ready' || CONNECTION_ERROR.test(message)) {
      throw new UnavailableError('redis', `Redis is unreachable: ${message}`, { cause: err });
    }
    if (REFUSING.test(message)) throw new UnavailableError('redis', `Redis refused the command: ${message.split('\n', 1)[0]}`, { cause: err });
    throw err;
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/** Every Redis key Slipway uses besides BullMQ's own, under one prefix. */
export function keys(prefix: string) {
  return {
    seq: `${prefix}:jobs:seq`,
    all: `${prefix}:jobs:all`,
    byApp: (app: string) => `${prefix}:jobs:app:${app}`,
    /** Finished jobs of an app, scored by id: trimming reads only these. */
    finished: (app: string) => `${prefix}:jobs:finished:${app}`,
    /** The same jobs scored by their finish time (ms): retention's age test reads only these. */
    finishedAt: (app: string) => `${prefix}:jobs:finished-at:${app}`,
    /** Jobs of an app not yet started, scored by id: the ones woken when the app's deploy ends. */
    waiting: (app: string) => `${prefix}:jobs:waiting:${app}`,
    /**
     * Job ids matching a filter, scored by id: each combination of app,
     * state and trigger has its own sorted set (`all` without a filter, the
     * app's without the others), so any filtered page is one range read.
     * The Lua scripts of job-store.ts build the same names from `indexBase`.
     */
    jobIndex: (filter: { app?: string; state?: string; trigger?: string }) => {
      const parts = [filter.app && `app:${filter.app}`, filter.state && `state:${filter.state}`, filter.trigger && `trigger:${filter.trigger}`].filter(Boolean);
      return parts.length ? `${prefix}:jobs:${parts.join(':')}` : `${prefix}:jobs:all`;
    },
    indexBase: `${prefix}:jobs:`,
    /** `<sha>:<id>` of every job with a commit, all scored 0: a commit prefix is a range of it. */
    commits: `${prefix}:jobs:shas`,
    /**
     * Set once jobs recorded before the indexes above existed have been
     * filed in them (indexHistory). `:2` since that pass also dates finished
     * jobs: a history indexed before is walked once more.
     */
    indexed: `${prefix}:jobs:indexed:2`,
    /** Apps that have had jobs: what the retention sweep walks. */
    apps: `${prefix}:jobs:apps`,
    job: (id: string) => `${prefix}:job:${id}`,
    log: (id: string) => `${prefix}:job:${id}:log`,
    /** The last batch number each writer of the log appended (see JobStore.appendLog): a batch ioredis sends again is not added twice. */
    logWriters: (id: string) => `${prefix}:job:${id}:log-writers`,
    /** The last lines of a running job's log past its cap (JobLog), and (a hash) their owner and bytes: what its end will be, should its worker die first. */
    logTail: (id: string) => `${prefix}:job:${id}:log-tail`,
    logTailMeta: (id: string) => `${prefix}:job:${id}:log-tail-meta`,
    cancel: (id: string) => `${prefix}:job:${id}:cancel`,
    /** Since when (ms) a job an earlier attempt started waits for etcd to say whether that attempt went live. */
    etcdWait: (id: string) => `${prefix}:job:${id}:etcd-wait`,
    /** Set (briefly) while the job waits for its app to be free, not for a retry's backoff: the one a finished deploy may wake. */
    waitingForApp: (id: string) => `${prefix}:job:${id}:waiting-for-app`,
    /** Held while one request re-runs the job (retry), so two operators at once queue one re-run. */
    retrying: (id: string) => `${prefix}:job:${id}:retrying`,
    /** Claimed by the one process that reports a job's end (its final commit status, notifications, metrics). */
    endReported: (id: string) => `${prefix}:job:${id}:feedback-reported`,
    delivery: (provider: string, id: string) => `${prefix}:delivery:${provider}:${id}`,
    /** A webhook queued `sha` for `app`; a forced push's mark also names the head it replaced (`before`): see JobGroup.guard. */
    pushed: (app: string, sha: string, before?: string) => `${prefix}:app:${app}:pushed:${sha}${before ? `:${before}` : ''}`,
    /** The live release's commit and its recent ancestors: a push of one of them is stale. */
    liveAncestry: (app: string) => `${prefix}:app:${app}:live-ancestry`,
    /** `{"sha","job"}` of what is live, as the last completed deploy left it. */
    live: (app: string) => `${prefix}:app:${app}:live`,
    appLock: (app: string) => `${prefix}:lock:app:${app}`,
    events: `${prefix}:events`,
  };
}
export type Keys = ReturnType<typeof keys>;
