import { describe, expect, it } from 'vitest';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { failureKind } from './failure-kind.js';

describe('failureKind', () => {
  it.each([
    [new SlipwayError('build_failed', 'x'), 'failure'], [new SlipwayError('health_failed', 'x'), 'failure'],
    [new SlipwayError('nginx_check_failed', 'x'), 'failure'], [new SlipwayError('sha_not_found', 'x'), 'failure'],
    [new UnavailableError('etcd', 'x'), 'error'], [new SlipwayError('lock_timeout', 'x'), 'error'],
    [new SlipwayError('nginx_reload_failed', 'x'), 'error'], [new Error('bug'), 'error'], [undefined, 'error'],
  ])('%s → %s', (err, expected) => {
    expect(failureKind(err)).toBe(expected);
  });
});
