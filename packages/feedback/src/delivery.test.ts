import { describe, expect, it } from 'vitest';
import { backoffDelay } from './delivery.js';

const policy = { baseDelayMs: 1000, maxDelayMs: 30_000 };

describe('backoffDelay', () => {
  it('doubles from the base, honours Retry-After, never passes the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(policy, n))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000]);
    expect(backoffDelay(policy, 1, 5000)).toBe(5000);
    expect(backoffDelay(policy, 1, 3_600_000)).toBe(30_000);
  });
});
