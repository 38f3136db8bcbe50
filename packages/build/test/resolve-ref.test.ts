import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSlipwayError } from '@slipway/core/slipway-error';
import { commitVersion, createFixtureRepo, type FixtureRepo, tempDir } from '@slipway/devstack/testing';
import { resolveRef } from '../src/resolve-ref.js';
import { workPaths } from '../src/repo-cache.js';
import { testApp } from './test-app.js';

const temp = tempDir('slipway-resolve-');
const workdir = join(temp.path, 'work');
let fixture: FixtureRepo & { sha: string };
let feature: string;

beforeAll(async () => {
  fixture = await createFixtureRepo(temp.path, { version: 'v1', name: 'app' });
  feature = await commitVersion(fixture, { version: 'v1-feature', branch: 'feature/login' });
});
afterAll(() => temp.remove());

const caught = (promise: Promise<unknown>) => promise.then(() => { throw new Error('expected a failure'); }, (err: unknown) => err);

describe('resolveRef', () => {
  it('resolves branches and commit ids, fetching first', async () => {
    const app = testApp({ repo: fixture.url });
    expect(await resolveRef({ app, ref: 'master', workdir })).toBe(fixture.sha);
    expect(await resolveRef({ app, ref: 'refs/heads/master', workdir })).toBe(fixture.sha);
    expect(await resolveRef({ app, ref: 'feature/login', workdir })).toBe(feature);
    expect(await resolveRef({ app, ref: fixture.sha.slice(0, 7), workdir })).toBe(fixture.sha);
    expect(await resolveRef({ app, ref: fixture.sha, workdir })).toBe(fixture.sha);
    // A push after the first resolution is seen: resolving fetches.
    const next = await commitVersion(fixture, { version: 'v2' });
    expect(await resolveRef({ app, ref: 'master', workdir })).toBe(next);
    expect(await resolveRef({ app, ref: next.slice(0, 10), workdir })).toBe(next);
  });

  it('takes a plain path as the repository', async () => {
    const app = testApp({ repo: fixture.bare });
    expect(await resolveRef({ app, ref: 'feature/login', workdir })).toBe(feature);
  });

  it.each([['no-such-branch'], ['deadbeef00'], ['f'.repeat(40)]])('fails with unknown_ref for %j', async (ref) => {
    const app = testApp({ repo: fixture.url });
    const err = await caught(resolveRef({ app, ref, workdir }));
    expect(isSlipwayError(err, 'unknown_ref')).toBe(true);
  });

  it.each([
    ['--upload-pack=touch /tmp/x'],
    ['$(id)'],
    ['-x'],
    ['master..other'],
    ['brañch'],
    ['a b'],
    ['HEAD@{1}'],
    [''],
  ])('refuses %j before git runs', async (ref) => {
    const app = testApp({ repo: fixture.url });
    const err = await caught(resolveRef({ app, ref, workdir }));
    expect(isSlipwayError(err, 'invalid_ref')).toBe(true);
    expect(existsSync(workPaths(workdir, app.name).repo)).toBe(false);
  });
});
