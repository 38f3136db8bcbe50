import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '@slipway/core/slipway-error';
import { tempDir } from '@slipway/devstack/testing';
import { withRepoLock } from './repo-lock.js';

const temp = tempDir('slipway-lock-');
afterAll(() => temp.remove());
let n = 0;
const lockPath = () => join(temp.path, `repo-${++n}.lock`);

describe('withRepoLock', () => {
  it('lets one holder in at a time and removes the file afterwards', async () => {
    const path = lockPath();
    let inside = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(Array.from({ length: 6 }, (_, i) => withRepoLock(path, async () => {
      inside++;
      most = Math.max(most, inside);
      await sleep(15);
      order.push(i);
      inside--;
    })));
    expect(most).toBe(1);
    expect(order.sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(existsSync(path)).toBe(false);
  });

  it('releases the lock when the work throws', async () => {
    const path = lockPath();
    await expect(withRepoLock(path, async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect(existsSync(path)).toBe(false);
  });

  it.each([
    ['a holder on this host and in this pid namespace whose process is gone', () => JSON.stringify({ host: hostname(), pid: spawnSync('true').pid, pidns: readlinkSync('/proc/self/ns/pid'), token: 'dead' }), 0],
    ['a holder that stopped refreshing the file', () => JSON.stringify({ host: 'elsewhere', pid: 1, token: 'old' }), 60],
    ['a half-written file', () => '{"host":', 60],
  ])('breaks the lock of %s', async (_name, content, ageSeconds) => {
    const path = lockPath();
    writeFileSync(path, content());
    if (ageSeconds) utimesSync(path, new Date(), new Date(Date.now() - ageSeconds * 1000));
    const result = await withRepoLock(path, async ({ recovered }) => recovered, { staleMs: 30_000, waitMs: 5_000 });
    expect(result).toBe(true);
  });

  it('judges a holder of another pid namespace (another container with this host name) by age, not by its pid', async () => {
    const path = lockPath();
    // A pid no process here has: in its own namespace it may well be alive (a CLI exec'd into the other worker's container).
    writeFileSync(path, JSON.stringify({ host: hostname(), pid: spawnSync('true').pid, pidns: 'pid:[1]', token: 'theirs' }));
    const err = await withRepoLock(path, async () => 'got it', { staleMs: 30_000, waitMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(JSON.parse(readFileSync(path, 'utf8')).token).toBe('theirs');
    // Left unrefreshed past staleMs, it is broken as any other.
    utimesSync(path, new Date(), new Date(Date.now() - 60_000));
    expect(await withRepoLock(path, async ({ recovered }) => recovered, { staleMs: 30_000 })).toBe(true);
  });

  it('waits for a live holder that keeps its lock fresh, then gives up retryably', async () => {
    const path = lockPath();
    let release!: () => void;
    const held = withRepoLock(path, () => new Promise<void>((resolve) => { release = resolve; }), { staleMs: 200 });
    await sleep(20);
    const started = Date.now();
    // Older than staleMs by the end, were it not refreshed by its holder.
    const err = await withRepoLock(path, async () => 'got it', { staleMs: 200, waitMs: 600 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    release();
    await held;
    expect(await withRepoLock(path, async () => 'got it')).toBe('got it');
  });

  it('stops waiting when the signal fires', async () => {
    const path = lockPath();
    let release!: () => void;
    const held = withRepoLock(path, () => new Promise<void>((resolve) => { release = resolve; }));
    await sleep(20);
    const controller = new AbortController();
    const reason = new Error('cancelled');
    setTimeout(() => controller.abort(reason), 100);
    await expect(withRepoLock(path, async () => 'no', { signal: controller.signal })).rejects.toBe(reason);
    release();
    await held;
  });
});
