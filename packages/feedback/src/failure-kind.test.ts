import { describe, expect, it } from 'vitest';
import { InvalidInputError, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { failureKind } from './failure-kind.js';

describe('failureKind: what the error says of whose fault it is', () => {
  it.each([
    [new SlipwayError('build_failed', 'x', { fault: 'commit' }), 'failure'],
    [new SlipwayError('unknown_ref', 'x', { fault: 'request' }), 'failure'],
    [new InvalidInputError('x'), 'failure'],
    [new UnavailableError('etcd', 'x'), 'error'],
    [new SlipwayError('lock_timeout', 'x', { retryable: true }), 'error'],
    [new SlipwayError('nginx_reload_failed', 'x'), 'error'],
    [new Error('bug'), 'error'],
    [undefined, 'error'],
  ])('%s → %s', (err, expected) => {
    expect(failureKind(err)).toBe(expected);
  });
});
