import { describe, expect, it } from 'vitest';
import { faultOf, InvalidInputError, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { failureKind, formatDuration, shortText } from './job-wording.js';

describe('failureKind of faultOf: what the error says of whose fault it is', () => {
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
    expect(failureKind(faultOf(err))).toBe(expected);
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
