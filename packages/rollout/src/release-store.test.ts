import { describe, expect, it } from 'vitest';
import { parseReleaseRecord, rollbackTarget, type ReleaseRecord } from './release-store.js';

const r = (n: number, image = `slipway/a:${n}`): ReleaseRecord => ({ sha: String(n).repeat(40), image, job: `j${n}`, at: `2026-01-0${n}T00:00:00.000Z` });

describe('rollbackTarget', () => {
  const history = [r(3), r(2), r(1)];
  it.each([
    ['the previous release by default', history, r(3), undefined, r(2)],
    ['skips entries with the live image (a redeploy of the same image)', [r(3), r(2, 'slipway/a:3'), r(1)], r(3), undefined, r(1)],
    ['skips a rebuild of the live commit pinned to another digest (a swarm release)', [r(3, `reg:5000/slipway/a:3@sha256:${'b'.repeat(64)}`), r(2, `reg:5000/slipway/a:3@sha256:${'c'.repeat(64)}`), r(1, 'reg:5000/slipway/a:1')], r(3, `reg:5000/slipway/a:3@sha256:${'b'.repeat(64)}`), undefined, r(1, 'reg:5000/slipway/a:1')],
    ['a given commit, by prefix', history, r(3), '1111111', r(1)],
    ['a given full commit', history, r(3), '2'.repeat(40), r(2)],
  ])('%s', (_what, h, current, to, expected) => {
    expect(rollbackTarget(h, current, to)).toEqual(expected);
  });

  it.each([
    ['an unknown commit', history, r(3), 'abcdef0', 'release_not_found'],
    ['the live commit (nothing to roll back to)', history, r(3), '3333333', 'release_not_found'],
    ['nothing earlier', [r(3)], r(3), undefined, 'release_not_found'],
    ['a malformed commit', history, r(3), 'xyz', 'invalid_input'],
    ['a prefix two kept commits share', [r(3), { ...r(2), sha: `1234567${'a'.repeat(33)}` }, { ...r(1), sha: `1234567${'b'.repeat(33)}` }], r(3), '1234567', 'ambiguous_ref'],
  ])('refuses %s', (_what, h, current, to, code) => {
    expect(() => rollbackTarget(h, current, to)).toThrow(expect.objectContaining({ code }));
  });
});

describe('parseReleaseRecord', () => {
  it.each([
    [JSON.stringify({ sha: 'a'.repeat(40), image: 'i', job: '1', at: 't' }), true],
    [JSON.stringify({ sha: null, image: 'i', job: '1', at: 't' }), true],
    [JSON.stringify({ sha: 'nope', image: 'i', job: '1', at: 't' }), false],
    ['{', false], [null, false],
  ])('%s → %s', (text, ok) => expect(parseReleaseRecord(text) !== null).toBe(ok));
});
