import { describe, expect, it } from 'vitest';
import { oneRunPerKey } from './one-run-per-key.js';

describe('oneRunPerKey', () => {
  it('runs one at a time per key; asks meanwhile make exactly one more run; other keys run beside it', async () => {
    const log: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const runs = oneRunPerKey(async (key) => {
      log.push(`start ${key}`);
      if (key === 'a' && log.filter((l) => l === 'start a').length === 1) await gate;
      log.push(`end ${key}`);
    }, () => false);
    const first = runs.ask('a');
    const again = [runs.ask('a'), runs.ask('a'), runs.ask('a')];
    await runs.ask('b');
    expect(log).toEqual(['start a', 'start b', 'end b']);
    release();
    await Promise.all([first, ...again]);
    expect(log).toEqual(['start a', 'start b', 'end b', 'end a', 'start a', 'end a']);
    expect(runs.running()).toEqual([]);
  });

  it('stops the chain once stopped', async () => {
    let count = 0;
    let stopped = false;
    const runs = oneRunPerKey(async () => {
      count++;
      stopped = true;
      await new Promise((r) => setTimeout(r, 10));
    }, () => stopped);
    await Promise.all([runs.ask('a'), runs.ask('a')]);
    expect(count).toBe(1);
  });
});
