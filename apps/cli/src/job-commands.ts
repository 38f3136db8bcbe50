import { setTimeout as sleep } from 'node:timers/promises';
import { FINAL_STATES, type JobRecord, publicJob, JOB_STATES, type JobState } from '@slipway/queue/job-types';
import type { JobStore } from '@slipway/queue/job-store';
import { withRedis } from '@slipway/queue/redis';
import { firstLine, isRetryable, UnavailableError } from '@slipway/core/slipway-error';
import { duration, jsonText, short, age, table, Spinner, type Terminal } from './terminal.js';
import { type CliContext, parseFlags, positiveInt, UsageError } from './cli-context.js';

export interface WatchOptions {
  /** Print the job's log lines as they arrive (from line `from`). */
  showLog: boolean;
  from?: number;
  intervalMs?: number;
  /** Prefix every printed line (the git hook prints through git's "remote:" lines). */
  prefix?: string;
  /** How long Redis may stay unreachable before following gives up. Default FOLLOW_OUTAGE_MS. */
  outageMs?: number;
  /** Where log lines go instead of stdout above the spinner (`logs --follow --json`: into its one document). */
  line?: (line: string) => void;
}

/** How often plain output repeats a step that has not changed. */
const STILL_EVERY_MS = 30_000;
/**
 * How long following a job rides out Redis being unreachable (a restart, a
 * failover) before giving up. The job does not depend on who follows it:
 * it carries on, or its worker stops it at its next safe point once Redis
 * has been gone long enough to lose the app's lease.
 */
export const FOLLOW_OUTAGE_MS = 5 * 60_000;
/** How often Redis is asked again while it is unreachable. */
const OUTAGE_POLL_MS = 1000;

/**
 * Whether a failed read of a job means Redis is unreachable (worth asking
 * again), not that the job is unknown or its record unreadable: withRedis
 * has made every connection failure an UnavailableError by then.
 */
function isOutage(err: unknown): boolean {
  return isRetryable(err);
}

/** How long a command's read rides out Redis reconnecting (a restart, a blip) before it says Redis is unreachable. */
const BLIP_MS = 30_000;

/**
 * One read of a command, bounded (withRedis: a Redis that stopped
 * answering on an open connection is given up on), and tried again while
 * the connection is down and reconnecting, for up to BLIP_MS: it heals
 * itself, and a cancel's wait or a long log's pages should not end at
 * Redis's first blip.
 */
async function readThrough<T>(store: JobStore, operation: () => Promise<T>): Promise<T> {
  const since = Date.now();
  for (;;) {
    try {
      return await withRedis(store.redis, operation);
    } catch (err) {
      if (!(err instanceof UnavailableError) || store.redis.status === 'ready' || Date.now() - since >= BLIP_MS) throw err;
      await sleep(OUTAGE_POLL_MS);
    }
  }
}

/** Lines of a followed log read and written at once: at most 800 KB (a log line is at most 16 KB). */
const LOG_PAGE_LINES = 50;

/**
 * Follows a job until it ends: a spinner with its step and elapsed time
 * on a terminal (plain step lines otherwise), its log lines if asked, and a
 * closing line with the outcome. Returns the final record.
 */
export async function watchJob(store: JobStore, id: string, terminal: Terminal, options: WatchOptions): Promise<JobRecord> {
  const spinner = new Spinner(terminal);
  let next = options.from ?? 1;
  let lastStep = '';
  let lastPrinted = 0;
  const started = Date.now();
  const print = options.line ?? ((line: string) => spinner.above(`${options.prefix ?? ''}${line}`));
  let outageSince: number | null = null;
  // Each read bounded: a Redis that stops answering with its connection open (paused, wedged) is an outage like
  // one that went away, not a wait with no end (a --wait, or a git push holding its remote's lock, for ever).
  const read = <T>(operation: () => Promise<T>) => withRedis(store.redis, operation);
  // A page at a time, each taken by the reader before the next: a log that grew by megabytes since the last poll is
  // never held, or written, at once.
  const printNewLines = async () => {
    for (let full = true; full;) {
      const lines = await read(() => store.readLog(id, next, next + LOG_PAGE_LINES - 1));
      for (const line of lines) print(line);
      next += lines.length;
      full = lines.length === LOG_PAGE_LINES;
      await terminal.drained?.();
    }
  };
  // A spinner left drawing would garble the error that ends the wait.
  try {
    for (;;) {
      let record: JobRecord;
      try {
        record = await read(() => store.mustGet(id));
        if (options.showLog) await printNewLines();
      } catch (err) {
        // A Redis restart must not end the wait (a --wait exiting 1, a git push refused) while the job carries on.
        if (!isOutage(err)) throw err;
        const now = Date.now();
        if (outageSince === null) spinner.update(`Redis is unreachable (${firstLine(err)}); still following job ${id}`);
        outageSince ??= now;
        if (now - outageSince >= (options.outageMs ?? FOLLOW_OUTAGE_MS)) {
          throw new UnavailableError('redis', `Redis has been unreachable for ${duration(now - outageSince)} while following job ${id}, which may still be running (slipway jobs shows it once Redis is back)`, { cause: err });
        }
        await sleep(OUTAGE_POLL_MS);
        continue;
      }
      if (outageSince !== null) {
        spinner.update(`Redis is back after ${duration(Date.now() - outageSince)}`);
        outageSince = null;
        lastStep = '';
      }
      const final = FINAL_STATES.has(record.state);
      if (!final) {
        const label = record.state === 'waiting' ? 'waiting' : record.step;
        const since = record.startedAt ? Date.parse(record.startedAt) : Date.parse(record.createdAt);
        if (terminal.interactive) spinner.update(`job ${id} · ${record.app} · ${label} · ${duration(Date.now() - since)}`);
        else if (label !== lastStep) {
          spinner.update(`job ${id}: ${label}`);
          lastPrinted = Date.now();
        } else if (Date.now() - lastPrinted >= STILL_EVERY_MS) {
          // A quiet step says it is still going now and then: a reader of plain output (a CI log, git's pusher) sees the
          // wait is not stuck, and a hook whose pusher went away finds out by writing.
          spinner.update(`job ${id}: ${label} (${duration(Date.now() - since)})`);
          lastPrinted = Date.now();
        }
        lastStep = label;
      }
      if (final) {
        // Whatever was logged after the record ended; should Redis go now, the outcome below is still known, and the
        // reader is told the log's end is missing rather than shown a log that seems whole.
        const missing = options.showLog ? await printNewLines().then(() => null, (err: unknown) => `the rest of job ${id}'s log, from line ${next}, could not be read (${firstLine(err)}); slipway logs ${id} shows it once Redis answers`) : null;
        spinner.stop(missing === null ? outcomeLine(record, Date.now() - started) : `${missing}\n${outcomeLine(record, Date.now() - started)}`);
        return record;
      }
      await sleep(options.intervalMs ?? 200);
    }
  } catch (err) {
    spinner.stop();
    throw err;
  }
}

export function outcomeLine(record: JobRecord, elapsedMs?: number): string {
  const took = record.startedAt && record.finishedAt ? duration(Date.parse(record.finishedAt) - Date.parse(record.startedAt)) : elapsedMs !== undefined ? duration(elapsedMs) : '';
  switch (record.state) {
    case 'completed':
      return `job ${record.id} completed: ${record.app} is live at ${record.sha ? short(record.sha) : record.result?.image ?? ''}${took ? ` (${took})` : ''}`;
    case 'superseded':
      return `job ${record.id} superseded by job ${record.supersededBy}`;
    case 'cancelled':
      return `job ${record.id} cancelled`;
    default:
      return `job ${record.id} failed: ${record.error ?? 'unknown error'}`;
  }
}

/** `--wait`: progress until the job ends; on failure the log's tail; exit 0 only if it completed. */
export async function finishWait(ctx: CliContext, id: string): Promise<number> {
  const queue = await ctx.queue();
  const record = await watchJob(queue.store, id, ctx.terminal, { showLog: false });
  if (ctx.options.json) ctx.terminal.out(jsonText(publicJob(record)));
  if (record.state === 'failed') {
    const tail = await withRedis(queue.redis, async () => queue.store.readLog(id, Math.max(1, (await queue.store.logLength(id)) - 14))).catch(() => []);
    if (tail.length) ctx.terminal.err(`last lines of the log (slipway logs ${id} for all of it):\n${tail.map((l) => `  ${l}`).join('\n')}`);
  }
  return record.state === 'completed' ? 0 : 1;
}

/** Most jobs one `slipway jobs` lists (read in one round trip). */
const JOBS_LIMIT_MAX = 10_000;

export const JOBS_USAGE = 'usage: slipway jobs [--app A] [--state S] [--limit N] [--json]\n  S is one of: ' + JOB_STATES.join(', ');

export async function jobs(ctx: CliContext, argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { app: { type: 'string' }, state: { type: 'string' }, limit: { type: 'string' } }, JOBS_USAGE, { min: 0, max: 0 });
  const state = values.state as JobState | undefined;
  if (state !== undefined && !JOB_STATES.includes(state)) throw new UsageError(`unknown state ${JSON.stringify(state)}`, JOBS_USAGE);
  const limit = positiveInt(values.limit, '--limit', JOBS_USAGE, JOBS_LIMIT_MAX) ?? 20;
  if (values.app !== undefined) ctx.app(values.app);
  const queue = await ctx.queue();
  const records = await readThrough(queue.store, () => queue.store.list({ app: values.app, state, limit }));
  if (ctx.options.json) {
    ctx.terminal.out(jsonText(records.map(publicJob)));
    return 0;
  }
  if (records.length === 0) {
    ctx.terminal.out('no jobs');
    return 0;
  }
  const now = Date.now();
  const cut = (r: JobRecord) => r.result?.drain?.open ?? 0;
  ctx.terminal.out(table(['ID', 'APP', 'SHA', 'TRIGGER', 'STATE', 'DURATION', 'AGE'], records.map((r) => [
    r.id, r.app, r.sha ? short(r.sha) : (r.image ?? '-'), r.trigger, cut(r) > 0 ? `${r.state} (${cut(r)} cut)` : r.state,
    r.startedAt ? duration((r.finishedAt ? Date.parse(r.finishedAt) : now) - Date.parse(r.startedAt)) : '-',
    age(r.createdAt, now),
  ])));
  // Said where the job is listed, not only in its log: a drain that ran out stopped the previous release with requests open.
  if (records.some((r) => cut(r) > 0)) ctx.terminal.out('(N cut): drain_s ran out with N connections to the previous release still open, and they were stopped with it; see slipway logs <job>');
  return 0;
}

export const LOGS_USAGE = 'usage: slipway logs <job> [--follow]';

/** A whole log is printed this many lines, and bytes, at a time. */
const PRINT_PAGE_LINES = 5_000;
const PRINT_PAGE_BYTES = 1024 * 1024;

/** The whole log; with --follow, live until the job ends, exiting with its outcome. */
export async function logs(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { follow: { type: 'boolean', short: 'f' } }, LOGS_USAGE, { min: 1, max: 1 });
  const queue = await ctx.queue();
  const id = positionals[0]!;
  await readThrough(queue.store, () => queue.store.mustGet(id));
  // --json: one array of the log's lines, written as they are read (a log may be hundreds of MB), closed however the
  // command ends so that stdout stays one document.
  const array = ctx.options.json ? jsonArrayWriter(ctx.terminal) : null;
  try {
    if (!values.follow) {
      // A page at a time, each taken by the reader before the next: a log of hundreds of MB (jobs.log_max_bytes allows
      // 1 GB) is never held, or joined, at once.
      for (let next = 1; ;) {
        const lines = await readThrough(queue.store, () => queue.store.readLogBounded(id, next, next + PRINT_PAGE_LINES - 1, PRINT_PAGE_BYTES));
        if (lines.length === 0) return 0;
        if (array) array.items(lines);
        else ctx.terminal.out(lines.join('\n'));
        next += lines.length;
        await ctx.terminal.drained?.();
      }
    }
    const record = await watchJob(queue.store, id, ctx.terminal, { showLog: true, ...(array ? { line: (line: string) => array.items([line]) } : {}) });
    return record.state === 'completed' ? 0 : 1;
  } finally {
    array?.end();
  }
}

/** One JSON array on stdout, written a part at a time: `[`, then the items, then `]` from end(). */
function jsonArrayWriter(terminal: Terminal): { items(values: readonly string[]): void; end(): void } {
  let count = 0;
  terminal.out('[');
  return {
    items(values) {
      if (values.length === 0) return;
      // jsonText: a C1 control a build printed (U+009B) is escaped, or the terminal's scrub would cut the document.
      terminal.out(values.map((v, i) => `${count + i === 0 ? '' : ','}${jsonText(v)}`).join('\n'));
      count += values.length;
    },
    end: () => terminal.out(']'),
  };
}

export const RETRY_USAGE = 'usage: slipway retry <job> [--wait] | slipway retry --failed [--app A] [--wait]';

export async function retry(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { failed: { type: 'boolean' }, app: { type: 'string' }, wait: { type: 'boolean' } }, RETRY_USAGE, { min: 0, max: 1 });
  // parseArgs leaves an absent boolean undefined: neither an id nor --failed is a usage error too.
  if (Boolean(values.failed) === (positionals.length === 1)) throw new UsageError('give a job id or --failed', RETRY_USAGE);
  if (values.app !== undefined && !values.failed) throw new UsageError('--app goes with --failed', RETRY_USAGE);
  if (values.app !== undefined) ctx.app(values.app);
  const queue = await ctx.queue();
  let started: JobRecord[];
  /** Retries that failed (not refused): the command then exits 1, after saying what it did queue. */
  let notRetried = 0;
  if (values.failed) {
    const { retried, skipped, failed } = await queue.retryFailed(values.app);
    started = retried;
    if (!ctx.options.json) {
      for (const { job, reason } of skipped) ctx.terminal.err(`skipped job ${job.id} (${job.app} ${short(job.sha)}): ${reason}`);
      if (retried.length === 0 && failed.length === 0) ctx.terminal.out('no failed jobs to retry');
    }
    for (const { job, error } of failed) ctx.terminal.err(`could not retry job ${job.id} (${job.app} ${short(job.sha)}): ${firstLine(error)}`);
    notRetried = failed.length;
  } else {
    started = [await queue.retry(positionals[0]!)];
  }
  if (ctx.options.json && !values.wait) {
    ctx.terminal.out(jsonText(started.map(publicJob)));
    return notRetried > 0 ? 1 : 0;
  }
  // With --json, stdout holds the one JSON document: what was queued is said on stderr.
  const say = ctx.options.json ? ctx.terminal.err : ctx.terminal.out;
  for (const job of started) say(`job ${job.id} queued: retry of job ${job.retryOf} (${job.app} ${short(job.sha ?? job.image)})`);
  if (!values.wait) return notRetried > 0 ? 1 : 0;
  const finals: JobRecord[] = [];
  for (const job of started) finals.push(await watchJob(queue.store, job.id, ctx.terminal, { showLog: false }));
  if (ctx.options.json) ctx.terminal.out(jsonText(finals.map(publicJob)));
  return notRetried === 0 && finals.every((f) => f.state === 'completed') ? 0 : 1;
}

export const CANCEL_USAGE = 'usage: slipway cancel <job>';

/** How long `cancel` waits to report a running job's end before leaving it to stop on its own. */
const WAIT_FOR_STOP_MS = 60_000;

export async function cancel(ctx: CliContext, argv: string[]): Promise<number> {
  const { positionals } = parseFlags(argv, {}, CANCEL_USAGE, { min: 1, max: 1 });
  const queue = await ctx.queue();
  const id = positionals[0]!;
  const after = await queue.cancel(id);
  // --json: the job as it ends up, one document; what happens meanwhile is said on stderr.
  const done = (record: JobRecord, text: string, status: number) => {
    if (ctx.options.json) ctx.terminal.out(jsonText(publicJob(record)));
    else ctx.terminal.out(text);
    return status;
  };
  if (after.state === 'cancelled') return done(after, `job ${id} cancelled (it had not started)`, 0);
  ctx.terminal.err(after.state === 'waiting'
    ? `job ${id} waits to run again after an attempt; it is cancelled when a worker takes it up (completed instead, if that attempt went live)…`
    : `job ${id} is running; it stops at the next safe point (never mid-cutover)…`);
  const deadline = Date.now() + WAIT_FOR_STOP_MS;
  while (Date.now() < deadline) {
    const record = await readThrough(queue.store, () => queue.store.mustGet(id));
    if (FINAL_STATES.has(record.state)) {
      return record.state === 'cancelled'
        ? done(record, `job ${id} cancelled; nothing of it went live`, 0)
        : done(record, `job ${id} ended ${record.state} before it could stop`, 1);
    }
    await sleep(250);
  }
  const still = ctx.options.json ? await readThrough(queue.store, () => queue.store.mustGet(id)).catch(() => after) : after;
  return done(still, `job ${id} has been asked to stop; follow it with: slipway logs ${id} --follow`, 0);
}
