import { describe, expect, it } from 'vitest';
import { stepDurations, webhookOutcome } from './metrics.js';

describe('stepDurations', () => {
  it('each step lasts until the next began; the last (done, or where it failed) is left out', () => {
    const at = (s: number) => new Date(Date.UTC(2024, 0, 1, 0, 0, s)).toISOString();
    expect(stepDurations({ steps: [
      { step: 'queued', at: at(0) }, { step: 'checkout', at: at(2) }, { step: 'build', at: at(3) }, { step: 'start', at: at(13) },
      { step: 'health', at: at(14) }, { step: 'switch', at: at(16) }, { step: 'drain', at: at(17) }, { step: 'done', at: at(20) },
    ] })).toEqual([
      { step: 'queued', seconds: 2 }, { step: 'checkout', seconds: 1 }, { step: 'build', seconds: 10 }, { step: 'start', seconds: 1 },
      { step: 'health', seconds: 2 }, { step: 'switch', seconds: 1 }, { step: 'drain', seconds: 3 },
    ]);
    expect(stepDurations({ steps: [{ step: 'queued', at: at(0) }, { step: 'build', at: at(5) }] })).toEqual([{ step: 'queued', seconds: 5 }]);
  });
});

describe('webhookOutcome', () => {
  it.each([
    [202, 'queued', 'queued'], [200, 'duplicate', 'duplicate'], [200, 'ignored:ping', 'ignored'], [401, 'bad_signature', 'rejected_4xx'],
    [413, 'payload_too_large', 'rejected_4xx'], [404, undefined, 'rejected_4xx'], [503, 'unavailable', 'error_5xx'], [500, 'internal', 'error_5xx'],
  ] as const)('%d %s → %s', (status, summary, expected) => {
    expect(webhookOutcome(status, summary)).toBe(expected);
  });
});
