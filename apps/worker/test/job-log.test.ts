import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES } from '@slipway/core/logger';
import { startRedisRelay, testStack, uniqueName } from '@slipway/devstack/testing';
import { JobStore } from '@slipway/queue/job-store';
import { connectRedis, type Redis } from '@slipway/queue/redis';
import { JobLog } from '../src/job-log.js';

const lineBytes = (lines: readonly string[]) => lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0);
const numbered = (from: number, to: number, make = (i: number) => `line ${i}`) => Array.from({ length: to - from + 1 }, (_, i) => make(from + i));
const SUMMARY = /^\[([\d,]+) lines \(([\d,]+) bytes\) not kept\]$/;
const count = (text: string) => Number(text.replace(/,/g, ''));

let redis: Redis;
let store: JobStore;
const prefix = uniqueName('joblog');
let jobs = 0;
const newJob = () => String(++jobs);

beforeAll(async () => {
  redis = connectRedis(testStack().redis!.url, 'worker');
  store = new JobStore(redis, prefix);
  await redis.ping();
});
afterEach(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
});
afterAll(() => redis.disconnect());

/** A log cut into its parts: the lines kept from the start, the notice, the summary, the last lines. */
function parts(log: string[]) {
  const notice = log.findIndex((line) => line.startsWith('… output over'));
  const summary = log.findIndex((line) => SUMMARY.test(line));
  return { notice, summary, head: log.slice(0, notice), tail: log.slice(summary + 1), dropped: SUMMARY.exec(log[summary] ?? '') };
}

describe('JobLog', () => {
  it('below the cap: every line, in order, complete once flush() resolves', async () => {
    const id = newJob();
    // A cap of N lines holds N-2 printed ones: two are kept for the notice and the count of what was left out.
    const log = await JobLog.open(store, id, { maxLines: 100_002 });
    const lines = numbered(1, 100_000, String);
    for (let i = 0; i < lines.length; i += 1000) {
      log.write(lines.slice(i, i + 1000).join('\n'));
      if (i % 10_000 === 0) await nextTurn();
    }
    await log.flush();
    expect(await store.readLog(id)).toEqual(lines);
  });

  it('over the line cap: the start, a notice as soon as it drops, then at the end what was left out and the real last lines', async () => {
    const id = newJob();
    const log = await JobLog.open(store, id, { maxLines: 1000, flushMs: 10 });
    log.write(numbered(1, 5000).join('\n'));
    // Live followers see the notice while the job runs...
    for (let i = 0; i < 100 && !(await store.readLog(id, -1)).at(-1)?.startsWith('… output over'); i++) await new Promise((r) => setTimeout(r, 20));
    const live = await store.readLog(id);
    expect(live.at(-1)).toMatch(/^… output over this log's cap \(1,000 lines or 10 MiB\): its last lines \(up to 900\) will follow when the job ends$/);
    log.write(numbered(5001, 10_000).join('\n'));
    await log.flush();
    const final = await store.readLog(id);
    // ... and, appended, never rewritten: line numbers they hold stay right.
    expect(final.slice(0, live.length)).toEqual(live);
    const { head, tail, dropped, notice, summary } = parts(final);
    expect(summary).toBe(notice + 1);
    // Most of the cap for the end (what the contract keeps), the rest for the start.
    expect(head).toEqual(numbered(1, 98));
    expect(tail).toEqual(numbered(9101, 10_000));
    expect(count(dropped![1]!)).toBe(9002);
    expect(count(dropped![2]!)).toBe(lineBytes(numbered(99, 9100)));
    expect(final.length).toBeLessThanOrEqual(1000);
  });

  it('over the byte cap: likewise, never more bytes than the cap', async () => {
    const id = newJob();
    const log = await JobLog.open(store, id, { maxBytes: 65_536 });
    const lines = numbered(1, 1000, (i) => `${i} ${'x'.repeat(1000)}`);
    for (const line of lines) log.write(line);
    await log.flush();
    const final = await store.readLog(id);
    expect(lineBytes(final)).toBeLessThanOrEqual(65_536);
    const { head, tail, dropped } = parts(final);
    expect(head).toEqual(lines.slice(0, head.length));
    expect(tail).toEqual(lines.slice(lines.length - tail.length));
    expect(head.length).toBeGreaterThan(3);
    expect(tail.length).toBeGreaterThan(40);
    expect(count(dropped![1]!)).toBe(1000 - head.length - tail.length);
  });

  it('at the smallest caps the configuration allows (10 lines, 4 KiB): still the start, the notices and the real last line', async () => {
    const id = newJob();
    const log = await JobLog.open(store, id, { maxLines: 10, maxBytes: 4096, flushMs: 10 });
    log.write(numbered(1, 200).join('\n'));
    log.write('error: the last word');
    await log.flush();
    const final = await store.readLog(id);
    expect(final[0]).toBe(numbered(1, 1)[0]);
    expect(final.at(-1)).toBe('error: the last word');
    expect(final.filter((line) => SUMMARY.test(line))).toHaveLength(1);
    expect(final.length).toBeLessThanOrEqual(10);
    expect(lineBytes(final)).toBeLessThanOrEqual(4096);

    // A last line longer than what is left for the end (a build's long error): kept, cut to fit.
    const long = newJob();
    const cut = await JobLog.open(store, long, { maxLines: 10, maxBytes: 4096, flushMs: 10 });
    cut.write(numbered(1, 200).join('\n'));
    cut.write(`error: ${'x'.repeat(3000)}`);
    await cut.flush();
    const kept = await store.readLog(long);
    expect(kept.at(-1)).toMatch(/^error: x+…$/);
    expect(lineBytes(kept)).toBeLessThanOrEqual(4096);
  });

  it('lines written after a flush follow at the next one, after another count of what was left out', async () => {
    const id = newJob();
    const log = await JobLog.open(store, id, { maxLines: 100 });
    log.write(numbered(1, 500).join('\n'));
    await log.flush();
    log.write(numbered(501, 600).join('\n'));
    log.write('error: the last word');
    await log.flush();
    const final = await store.readLog(id);
    expect(final.at(-1)).toBe('error: the last word');
    expect(final.filter((line) => SUMMARY.test(line))).toHaveLength(2);
    expect(final.length).toBeLessThanOrEqual(100 + 12);
  });

  it('the end of a log past its cap outlives its worker: the next attempt adds it first, and a completed log leaves no copy of it', async () => {
    const id = newJob();
    const dying = await JobLog.open(store, id, { maxLines: 1000, flushMs: 10 });
    dying.write(numbered(1, 5000).join('\n'));
    // Kept in Redis as the ring turns; the worker then dies (nothing flushes it).
    await expect.poll(() => redis.lrange(store.keys.logTail(id), -1, -1), { timeout: 5000 }).toEqual(['line 5000']);
    expect(await redis.llen(store.keys.logTail(id))).toBe(900);
    const next = await JobLog.open(store, id, { maxLines: 1000 });
    next.write('attempt 2');
    await next.flush();
    const log = await store.readLog(id);
    expect(log.slice(-902)).toEqual(['[the last lines of an earlier attempt past this log\'s cap, which it could not add itself (its worker stopped):]', ...numbered(4101, 5000), 'attempt 2']);
    // The copy is gone; its owner stays, saying it was taken over (for an attempt cut off, not dead, to find: see below).
    expect(await redis.exists(store.keys.logTail(id))).toBe(0);
    expect(await redis.hget(store.keys.logTailMeta(id), 'took')).toBe('1');
    // It goes on past the cap, then flushes (a give-up's last words, say): lines written after that keep a copy of
    // their own end, as long as the ring they pass through (100 lines), not cut short by the bytes of the first.
    next.write(numbered(1, 900, (i) => `long ${i} ${'x'.repeat(1000)}`).join('\n'));
    await expect.poll(() => redis.lrange(store.keys.logTail(id), -1, -1), { timeout: 5000 }).toEqual([`long 900 ${'x'.repeat(1000)}`]);
    await next.flush();
    next.write(numbered(1, 300, (i) => `after ${i}`).join('\n'));
    await expect.poll(() => redis.lrange(store.keys.logTail(id), -1, -1), { timeout: 5000 }).toEqual(['after 300']);
    expect(await redis.llen(store.keys.logTail(id))).toBe(100);
    await next.flush();

    // An attempt that ends as it should adds its end itself, and drops the copy in the same step.
    const other = newJob();
    const ending = await JobLog.open(store, other, { maxLines: 1000, flushMs: 10 });
    ending.write(numbered(1, 5000).join('\n'));
    await expect.poll(() => redis.llen(store.keys.logTail(other)), { timeout: 5000 }).toBe(900);
    await ending.flush();
    expect(await redis.exists(store.keys.logTail(other), store.keys.logTailMeta(other))).toBe(0);
    expect((await store.readLog(other)).slice(-900)).toEqual(numbered(4101, 5000));
    // Nothing is left for a later attempt to add again.
    const length = await store.logLength(other);
    await (await JobLog.open(store, other)).flush();
    expect(await store.logLength(other)).toBe(length);
  });

  it('an attempt cut off while another took the job\'s log over neither adds to the kept end nor drops it, nor adds again the lines the other took from it', async () => {
    const id = newJob();
    const cutOff = await JobLog.open(store, id, { maxLines: 1000, flushMs: 10 });
    cutOff.write(numbered(1, 5000).join('\n'));
    await expect.poll(() => redis.lrange(store.keys.logTail(id), -1, -1), { timeout: 5000 }).toEqual(['line 5000']);
    const next = await JobLog.open(store, id, { maxLines: 1000, flushMs: 10 });
    next.write(numbered(1, 3000, (i) => `next ${i}`).join('\n'));
    await expect.poll(() => redis.lrange(store.keys.logTail(id), -1, -1), { timeout: 5000 }).toEqual(['next 3000']);
    // The cut-off attempt carries on, and ends: its lines go to the log, the kept end stays the other's.
    cutOff.write('a late line');
    await cutOff.flush();
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(await redis.lrange(store.keys.logTail(id), -1, -1)).toEqual(['next 3000']);
    await next.flush();
    const log = await store.readLog(id);
    expect(log.at(-1)).toBe('next 3000');
    expect(await redis.exists(store.keys.logTail(id))).toBe(0);
    // The cut-off attempt's end: what the other took from the copy is in the log once, what came after it follows.
    for (const line of numbered(4101, 5000)) expect(log.filter((l) => l === line), line).toHaveLength(1);
    const late = log.indexOf('a late line');
    expect(log.slice(late - 1, late + 1)).toEqual(['[899 lines of this end are above, added when another attempt took the job over]', 'a late line']);
  });

  it('an attempt cut off that ends after the one that took its job\'s log over ended: still no line of the copy added again, and no new copy', async () => {
    const id = newJob();
    const cutOff = await JobLog.open(store, id, { maxLines: 1000, flushMs: 10 });
    cutOff.write(numbered(1, 5000).join('\n'));
    await expect.poll(() => redis.lrange(store.keys.logTail(id), -1, -1), { timeout: 5000 }).toEqual(['line 5000']);
    // A give-up's log, say: it takes the copy over, writes a line and ends.
    const next = await JobLog.open(store, id, { maxLines: 1000, flushMs: 10 });
    next.write('given up');
    await next.flush();
    // The cut-off attempt carries on (its pushes refused: the copy is not its own any more), then ends.
    cutOff.write(numbered(1, 50, (i) => `late ${i}`).join('\n'));
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(await redis.exists(store.keys.logTail(id))).toBe(0);
    await cutOff.flush();
    const log = await store.readLog(id);
    for (const line of numbered(4151, 5000)) expect(log.filter((l) => l === line), line).toHaveLength(1);
    expect(log.slice(-51)).toEqual(['[850 lines of this end are above, added when another attempt took the job over]', ...numbered(1, 50, (i) => `late ${i}`)]);
    expect(await redis.exists(store.keys.logTail(id))).toBe(0);
  });

  it('a flush with nothing to send leaves the log sending: lines written after it arrive, by the timer and by the next flush', async () => {
    const id = newJob();
    const log = await JobLog.open(store, id, { flushMs: 10 });
    await log.flush();
    await log.flush();
    log.write('after an empty flush');
    await expect.poll(() => store.readLog(id), { timeout: 2000 }).toEqual(['after an empty flush']);
    log.write('and another');
    await log.flush();
    expect(await store.readLog(id)).toEqual(['after an empty flush', 'and another']);
  });

  it('a retried attempt counts the lines of the attempts before it', async () => {
    const id = newJob();
    const first = await JobLog.open(store, id, { maxLines: 1000 });
    first.write(numbered(1, 950).join('\n'));
    await first.flush();
    const second = await JobLog.open(store, id, { maxLines: 1000 });
    second.write(numbered(951, 5000).join('\n'));
    await second.flush();
    const final = await store.readLog(id);
    expect(final.slice(0, 950)).toEqual(numbered(1, 950));
    expect(final.at(-1)).toBe('line 5000');
    // The cap, plus the notice, the count and a few last lines so the retry's end is never lost.
    expect(final.length).toBeLessThanOrEqual(1000 + 102);
  });

  it('cuts a huge line to 16 KB and scrubs secrets', async () => {
    const id = newJob();
    const log = await JobLog.open(store, id, { secrets: ['hunter2-secret'] });
    log.write(`${'a-'.repeat(2 * 1024 * 1024)}\nclone https://bob:pw@example.com/x.git with hunter2-secret`);
    await log.flush();
    const [cut, scrubbed] = await store.readLog(id);
    expect(cut).toBe(`${'a-'.repeat(MAX_LINE_BYTES / 2)}… [line cut: 4,194,304 bytes]`);
    expect(scrubbed).toBe('clone https://***@example.com/x.git with ***');
  });

  it('holds bounded memory and writes a bounded log whatever is printed (3 million lines, 180 MB)', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, 'run with --expose-gc (vitest.config.ts does)').toBeTypeOf('function');
    const id = newJob();
    gc!();
    const baseline = process.memoryUsage().heapUsed;
    let peak = 0;
    const log = await JobLog.open(store, id);
    const filler = 'y'.repeat(50);
    for (let i = 1; i <= 3_000_000; i += 1000) {
      const batch: string[] = [];
      for (let j = i; j < i + 1000; j++) batch.push(`${j} ${filler}`);
      log.write(batch.join('\n'));
      if (i % 100_000 === 1) {
        await nextTurn();
        gc!();
        peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
      }
    }
    await log.flush();
    gc!();
    const after = process.memoryUsage().heapUsed - baseline;
    console.log(`JobLog heap above baseline: peak ${(peak / 1e6).toFixed(1)} MB, after ${(after / 1e6).toFixed(1)} MB`);
    expect(peak).toBeLessThan(40e6);
    const final = await store.readLog(id);
    expect(final.length).toBeLessThanOrEqual(100_000);
    expect(lineBytes(final)).toBeLessThanOrEqual(10 * 1024 * 1024);
    expect(final.at(-1)).toBe(`3000000 ${filler}`);
  }, 120_000);

  it('keeps a batch once when its answer is lost and ioredis sends it again (Redis had added it)', async () => {
    const relay = await startRedisRelay(testStack().redis!.url);
    const relayed = connectRedis(relay.url, 'worker');
    try {
      const through = new JobStore(relayed, prefix);
      // The script is loaded on the connection first: the cut must come after it ran, not after a NOSCRIPT.
      await through.appendLog(newJob(), ['warm']);
      const id = newJob();
      const log = new JobLog(through, id);
      log.write('first');
      await log.flush();
      relay.dropReplyTo(store.keys.log(id));
      log.write('second\nthird');
      await log.flush();
      log.write('fourth');
      await log.flush();
      expect(relay.drops()).toBe(1);
      expect(await store.readLog(id)).toEqual(['first', 'second', 'third', 'fourth']);
    } finally {
      relayed.disconnect();
      relay.close();
    }
  });
});
