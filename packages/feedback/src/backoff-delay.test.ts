import { describe, expect, it } from 'vitest';
import { backoffDelay } from './backoff-delay.js';
import { formatDuration } from './format-duration.js';
import { shortText } from './short-text.js';

const policy = { baseDelayMs: 1000, maxDelayMs: 30_000 };

describe('backoffDelay', () => {
  it('doubles from the base, honours Retry-After, never passes the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(policy, n))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000]);
    expect(backoffDelay(policy, 1, 5000)).toBe(5000);
    expect(backoffDelay(policy, 1, 3_600_000)).toBe(30_000);
  });
});

describe('text helpers', () => {
  it.each([[850, '850 ms'], [42_400, '42 s'], [185_000, '3 min 5 s'], [120_000, '2 min'], [3_720_000, '1 h 2 min']])('formatDuration(%d) = %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
  it('shortText folds whitespace and cuts with an ellipsis, by code point', () => {
    expect(shortText('a\n  b\tc', 10)).toBe('a b c');
    expect(shortText('😀'.repeat(10), 5)).toBe('😀😀😀😀…');
  });
});
