import { randomUUID } from 'node:crypto';
import { scrubLine } from '@slipway/core/logger';
import type { ClosingTail, JobStore, LogWriter } from '@slipway/queue/job-store';

/** `jobs.log_max_lines` and `jobs.log_max_bytes` when none are given. */
export const DEFAULT_LOG_MAX_LINES = 100_000;
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
/**
 * Share of each cap held back for the end of the log: most of it (the
 * contract keeps the end; a build's error is there), the rest for its
 * start (what ran, from where), never less than HEAD_MIN_LINES and
 * HEAD_MIN_BYTES of it.
 */
const TAIL_SHARE = 0.9;
const HEAD_MIN_LINES = 1;
const HEAD_MIN_BYTES = 1024;
/** The end is held in the worker's memory until the job ends: past these, a larger cap keeps more of the start instead. */
const TAIL_MAX_LINES = 200_000;
const TAIL_MAX_BYTES = 16 * 1024 * 1024;
/** Share of each cap kept of the end of what is written after a flush of a log past it. */
const AFTER_FLUSH_SHARE = 0.1;
/** Bytes held back for the notice and the count of what was left out. */
const NOTICES_BYTES = 512;
/** Last lines kept whatever the log held before this attempt (a retry's end, its error, is never lost). */
const MIN_TAIL_LINES = 100;
const MIN_TAIL_BYTES = 64 * 1024;
/** Most lines sent in one RPUSH. */
const BATCH_LINES = 2000;
/** How often the ring's new lines go to its copy in Redis at most (the copy only matters should the worker die). */
const TAIL_PUSH_MS = 1000;

export interface JobLogOptions {
  /** Values scrubbed from every line (URL credentials always are). */
  secrets?: readonly (string | undefined)[];
  /** Lines the job's log may hold (`jobs.log_max_lines`). Default {@link DEFAULT_LOG_MAX_LINES}. */
  maxLines?: number;
  /** Bytes the job's log may hold, a newline counted per line (`jobs.log_max_bytes`). Default {@link DEFAULT_LOG_MAX_BYTES}. */
  maxBytes?: number;
  /** Longest a line waits before it is sent to Redis. Default 100 ms. */
  flushMs?: number;
}

/** The last lines, bounded in count and bytes: the oldest go first. */
class TailRing {
  private readonly lines: string[] = [];
  private readonly sizes: number[] = [];
  private start = 0;
  bytes = 0;

  constructor(readonly maxLines: number, readonly maxBytes: number) {}

  get length(): number {
    return this.lines.length - this.start;
  }

  /**
   * Adds a line; returns what had to go to make room. The newest line always
   * stays: alone over the bytes, it is cut to them (its beginning kept).
   */
  push(line: string, bytes: number): { lines: number; bytes: number } {
    let dropped = 0;
    if (bytes > this.maxBytes) {
      const kept = cutToBytes(line, this.maxBytes);
      dropped += bytes - Buffer.byteLength(kept);
      line = kept;
      bytes = Buffer.byteLength(kept);
    }
    this.lines.push(line);
    this.sizes.push(bytes);
    this.bytes += bytes;
    let lines = 0;
    while (this.length > 1 && (this.length > this.maxLines || this.bytes > this.maxBytes)) {
      const size = this.sizes[this.start]!;
      this.start++;
      this.bytes -= size;
      dropped += size;
      lines++;
    }
    // Compact now and then rather than shift() on every line.
    if (this.start > 1024 && this.start * 2 > this.lines.length) {
      this.lines.splice(0, this.start);
      this.sizes.splice(0, this.start);
      this.start = 0;
    }
    return { lines, bytes: dropped };
  }

  take(): string[] {
    const out = this.lines.slice(this.start);
    this.lines.length = 0;
    this.sizes.length = 0;
    this.start = 0;
    this.bytes = 0;
    return out;
  }
}

/**
 * What of a ring's lines its copy in Redis holds: the lines it took in
 * (`in`) and let go (`out`), and how many of those it took in the copy was
 * last seen to hold (`copiedUpTo`): its first `copiedUpTo - out` lines,
 * unless a push to it went unanswered (`gap`: which it holds is unknown).
 */
interface RingCount { in: number; out: number; copiedUpTo: number; gap: boolean }
const ringCount = (): RingCount => ({ in: 0, out: 0, copiedUpTo: 0, gap: false });

/** `line` cut to at most `bytes` bytes of UTF-8, ending with `…` when cut (never half a character). */
function cutToBytes(line: string, bytes: number): string {
  const room = Math.max(0, bytes - Buffer.byteLength('…'));
  let end = Math.min(line.length, room);
  while (end > 0 && Buffer.byteLength(line.slice(0, end)) > room) end--;
  // Not between the two halves of a surrogate pair.
  if (end > 0 && /[\ud800-\udbff]/.test(line[end - 1]!)) end--;
  return `${line.slice(0, end)}…`;
}

const number = (n: number) => n.toLocaleString('en-US');
const size = (bytes: number) =>
  bytes % (1024 * 1024) === 0 ? `${number(bytes / (1024 * 1024))} MiB` : bytes % 1024 === 0 ? `${number(bytes / 1024)} KiB` : `${number(bytes)} bytes`;

/**
 * A job's log as it is written: each line cut to 16 KB and scrubbed of the
 * app's secrets, sent to Redis in order in batches (one RPUSH in flight at
 * a time, carrying whatever arrived meanwhile: a chatty build costs a few
 * round trips a second, not one per line).
 *
 * Bounded whatever the build prints. The Redis list only grows (live
 * followers resume by line number), so the cap works forwards: lines go to
 * Redis until the log reaches its cap minus a tenth held back for the end;
 * further lines pass through a ring of the most recent ones (a tenth of each
 * cap), and the first line the ring lets go sends one notice line saying
 * so. {@link flush}, called before the job's final state, appends
 * `[N lines (B bytes) not kept]` and the ring: the log ends with the
 * build's real last lines. The ring is kept in Redis too as it turns (the
 * store's log tail, bounded as the ring is), so that a worker that dies
 * past the cap does not take the end with it: the next attempt of the job
 * (or its give-up) opens the log and adds that end first. Memory: the
 * ring, the lines of it not yet in Redis (a ring as large), and at most the
 * cap's worth of lines waiting for Redis.
 */
export class JobLog {
  private pending: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | null = null;
  private readonly maxLines: number;
  private readonly maxBytes: number;
  private readonly flushMs: number;
  /** Lines (and bytes) sent or on their way, before any were left out. */
  private lines: number;
  private bytes: number;
  /** Set once the log is near its cap: from then on lines pass through it. */
  private ring: TailRing | null = null;
  /** The ring's lines not yet in its copy in Redis (as many as it holds at most: older ones would be let go there too). */
  private tailUnsent: TailRing | null = null;
  private ringCount = ringCount();
  /**
   * The next append carries the ring's lines, from its `from`th: it drops
   * the copy in Redis in the same step, or, should another attempt have
   * taken the copy over (and added it), leaves out the lines it held.
   */
  private closingTail: { from: number; count: RingCount } | null = null;
  private lastTailPush = 0;
  /** The notice went out: lines are being left out. */
  private noticed = false;
  private dropped = { lines: 0, bytes: 0 };
  private lost = { lines: 0, bytes: 0, error: '' };
  /** This log's name and count of batches for appendLog: a batch ioredis sends again after a reconnect is kept once. */
  private readonly writer: LogWriter;
  /** The same name, counting its pushes to the ring's copy in Redis, for the same reason. */
  private readonly tailWriter: LogWriter;

  /**
   * The log of job `id`, counting what earlier attempts of the job wrote
   * there: the caps are per job, not per attempt.
   */
  static async open(store: JobStore, id: string, options: JobLogOptions = {}): Promise<JobLog> {
    const writer = randomUUID();
    // The end an earlier attempt kept past the cap and could not add itself (its worker died) goes in first, and the
    // kept end is this log's from now on. Should this fail, this log's end is not mirrored (the other's stays).
    await store.takeLogTail(id, writer, '[the last lines of an earlier attempt past this log\'s cap, which it could not add itself (its worker stopped):]').catch(() => 0);
    // Never fails: a log that cannot be read is counted from zero (the caps then hold per attempt).
    const existing = await store.logLength(id).then((n) => (n > 0 ? store.readLog(id) : [])).catch(() => [] as string[]);
    let bytes = 0;
    for (const line of existing) bytes += Buffer.byteLength(line) + 1;
    return new JobLog(store, id, options, { lines: existing.length, bytes }, writer);
  }

  constructor(
    private readonly store: JobStore,
    private readonly id: string,
    private readonly options: JobLogOptions = {},
    written: { lines: number; bytes: number } = { lines: 0, bytes: 0 },
    name: string = randomUUID(),
  ) {
    this.writer = { name, batch: 0 };
    this.tailWriter = { name, batch: 0 };
    this.maxLines = options.maxLines ?? DEFAULT_LOG_MAX_LINES;
    this.maxBytes = options.maxBytes ?? DEFAULT_LOG_MAX_BYTES;
    this.flushMs = options.flushMs ?? 100;
    this.lines = written.lines;
    this.bytes = written.bytes;
  }

  /** Adds one or more lines (a multi-line text is split). */
  write = (text: string): void => {
    for (const raw of text.replace(/\r\n/g, '\n').split('\n')) this.add(scrubLine(raw, this.options.secrets));
    if (this.pending.length >= BATCH_LINES) void this.send();
    else if (!this.timer && !this.writing) this.schedule();
  };

  /** A step header, so the log reads as a sequence of steps. */
  section(title: string): void {
    this.write(`==> ${title}`);
  }

  /**
   * Completes the log: every line written so far is in Redis when this
   * resolves, and if lines were left out, the count of them and the last
   * lines follow. Call it before the job's final state is recorded. Lines
   * written afterwards are kept the same way, completed by the next call.
   */
  flush(): Promise<void> {
    if (this.ring) {
      if (this.dropped.lines > 0) this.pending.push(`[${number(this.dropped.lines)} lines (${number(this.dropped.bytes)} bytes) not kept]`);
      this.dropped = { lines: 0, bytes: 0 };
      const from = this.pending.length;
      const count = this.ringCount;
      this.ringCount = ringCount();
      const end = this.ring.take();
      for (const line of end) this.pending.push(line);
      // Its copy in Redis goes with the append that carries it.
      this.tailUnsent?.take();
      // Lines written after this (a flush before the job's last words) keep a short end of their own: a log flushed
      // again and again past its cap grows by a tenth of it each time, not by nine.
      const lines = Math.max(1, Math.min(this.ring.maxLines, Math.floor(this.maxLines * AFTER_FLUSH_SHARE), MIN_TAIL_LINES));
      const bytes = Math.max(1, Math.min(this.ring.maxBytes, Math.floor(this.maxBytes * AFTER_FLUSH_SHARE), MIN_TAIL_BYTES));
      if (lines < this.ring.maxLines || bytes < this.ring.maxBytes) {
        this.ring = new TailRing(lines, bytes);
        this.tailUnsent = new TailRing(lines, bytes);
      }
      // A second flush before the first's append went: nothing of its lines was copied (the copy waits for pending lines).
      if (end.length > 0) this.closingTail ??= { from, count };
    }
    if (this.lost.lines > 0) {
      this.pending.push(`[${number(this.lost.lines)} lines (${number(this.lost.bytes)} bytes) could not be stored: ${this.lost.error}]`);
      this.lost = { lines: 0, bytes: 0, error: '' };
    }
    return this.send();
  }

  private add(line: string): void {
    const bytes = Buffer.byteLength(line) + 1;
    if (!this.ring) {
      const tailLines = Math.max(1, Math.min(Math.floor(this.maxLines * TAIL_SHARE), this.maxLines - 2 - HEAD_MIN_LINES, TAIL_MAX_LINES));
      const tailBytes = Math.min(Math.floor(this.maxBytes * TAIL_SHARE), this.maxBytes - NOTICES_BYTES - HEAD_MIN_BYTES, TAIL_MAX_BYTES);
      if (this.lines + 1 <= this.maxLines - tailLines - 2 && this.bytes + bytes <= this.maxBytes - tailBytes - NOTICES_BYTES) {
        this.pending.push(line);
        this.lines++;
        this.bytes += bytes;
        return;
      }
      // What is left of each cap for the end, and never less than a few lines for a retried attempt.
      const ringLines = Math.max(Math.min(tailLines, MIN_TAIL_LINES), Math.min(tailLines, this.maxLines - this.lines - 2));
      const ringBytes = Math.max(Math.min(tailBytes, MIN_TAIL_BYTES), Math.min(tailBytes, this.maxBytes - this.bytes - NOTICES_BYTES));
      this.ring = new TailRing(ringLines, ringBytes);
      this.tailUnsent = new TailRing(ringLines, ringBytes);
    }
    this.tailUnsent!.push(line, bytes);
    const evicted = this.ring.push(line, bytes);
    this.ringCount.in++;
    this.ringCount.out += evicted.lines;
    if (evicted.lines === 0 && evicted.bytes === 0) return;
    if (!this.noticed) {
      // Nothing goes to Redis between the last line sent and the ring: this is where the notice belongs, and live followers see it now.
      this.noticed = true;
      this.pending.push(`… output over this log's cap (${number(this.maxLines)} lines or ${size(this.maxBytes)}): its last lines (up to ${number(this.ring.maxLines)}) will follow when the job ends`);
    }
    this.dropped.lines += evicted.lines;
    this.dropped.bytes += evicted.bytes;
  }

  /** Sends later what is waiting: pending lines after flushMs, the ring's new lines once TAIL_PUSH_MS since the last went. */
  private schedule(): void {
    let wait: number | null = null;
    if (this.pending.length > 0) wait = this.flushMs;
    else if ((this.tailUnsent?.length ?? 0) > 0) wait = Math.max(this.flushMs, this.lastTailPush + TAIL_PUSH_MS - Date.now());
    if (wait !== null) this.timer = setTimeout(() => void this.send(), wait);
  }

  /** The ring's new lines may go to its copy in Redis now. */
  private tailDue(): boolean {
    return (this.tailUnsent?.length ?? 0) > 0 && Date.now() - this.lastTailPush >= TAIL_PUSH_MS;
  }

  /** Sends what is pending, one RPUSH at a time, until nothing is; resolves when all of it is in Redis. */
  private send(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.writing ??= this.drain();
    return this.writing;
  }

  /**
   * One RPUSH at a time, until nothing is pending (and the ring's new lines,
   * when due, to its copy). It yields before anything else: run to its end
   * at once (nothing to send), it would clear `writing` before send stored
   * it, which would then stay for good and no line be sent again. It clears
   * `writing` in the same turn as its last look at what is pending, so a
   * line added after that look starts another.
   */
  private async drain(): Promise<void> {
    await null;
    try {
      while (this.pending.length > 0 || this.tailDue()) await this.sendOne();
    } finally {
      this.writing = null;
      // The ring's lines not yet due: they go when they are.
      if (!this.timer) this.schedule();
    }
  }

  /** One append of pending lines, or one push of the ring's new lines to its copy. */
  private async sendOne(): Promise<void> {
    if (this.pending.length === 0) {
      // The ring's new lines, to its copy in Redis; lost, they are still in the ring, for the end.
      this.lastTailPush = Date.now();
      this.tailWriter.batch += 1;
      const count = this.ringCount;
      const upTo = count.in;
      // Taken over (another attempt holds the copy now), these lines are not in it; unanswered, they may be.
      const pushed = await this.store.pushLogTail(this.id, this.tailWriter, this.tailUnsent!.take(), this.ring!.maxLines, this.ring!.maxBytes).catch(() => null);
      if (pushed) count.copiedUpTo = Math.max(count.copiedUpTo, upTo);
      if (pushed === null) count.gap = true;
      return;
    }
    // The ring's lines go in one append, which drops the copy in Redis: split, a worker dying between two
    // appends would leave the copy, and the next attempt would add the lines already in the log again.
    const closing = this.closingTail;
    const batch = closing || this.pending.length <= BATCH_LINES ? this.pending : this.pending.slice(0, BATCH_LINES);
    this.pending = batch === this.pending ? [] : this.pending.slice(BATCH_LINES);
    this.closingTail = null;
    this.writer.batch += 1;
    // Counted now, not at the flush: a push on its way then may have copied more.
    const closingTail: ClosingTail | undefined = closing ? { from: closing.from, copied: closing.count.gap ? 0 : Math.max(0, closing.count.copiedUpTo - closing.count.out) } : undefined;
    await this.store.appendLog(this.id, batch, this.writer, closingTail ? { closingTail } : {}).catch((err: Error) => {
      // Redis refused the lines (the worker's connection waits out a disconnection): say so at the end.
      this.lost.lines += batch.length;
      for (const line of batch) this.lost.bytes += Buffer.byteLength(line) + 1;
      this.lost.error ||= err.message;
    });
  }
}
