import { describe, expect, it } from 'vitest';
import { webhookOutcome } from './webhook-outcome.js';

describe('webhookOutcome', () => {
  it.each([
    [202, 'queued', 'queued'], [200, 'duplicate', 'duplicate'], [200, 'ignored:ping', 'ignored'], [401, 'bad_signature', 'rejected_4xx'],
    [413, 'payload_too_large', 'rejected_4xx'], [404, undefined, 'rejected_4xx'], [503, 'unavailable', 'error_5xx'], [500, 'internal', 'error_5xx'],
  ] as const)('%d %s → %s', (status, summary, expected) => {
    expect(webhookOutcome(status, summary)).toBe(expected);
  });
});
