import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OWN_PID_NAMESPACE } from '@slipway/core/run-command';
import { commitVersion, createFixtureRepo, type FixtureRepo, tempDir } from '@slipway/devstack/testing';
import { checkout, prune } from '../src/checkout.js';
import { workPaths } from '../src/repo-cache.js';
import { testApp } from './test-app.js';

const temp = tempDir('slipway-prune-');
const workdir = join(temp.path, 'work');
let fixture: FixtureRepo & { sha: string };

beforeAll(async () => {
  fixture = await createFixtureRepo(temp.path, { version: 'v1', name: 'app' });
});
afterAll(() => temp.remove());

describe('prune', () => {
  it('removes trees of dead processes, strays and old trees; keeps live ones and, until old, those of another pid namespace; the cache forgets removed worktrees', async () => {
    const app = testApp({ repo: fixture.url });
    const live = await checkout({ app, sha: fixture.sha, workdir });
    const crashed = await checkout({ app, sha: fixture.sha, workdir });
    // As if another process had made it and been killed: its pid in the name is gone.
    const dead = spawnSync('true').pid!;
    const crashedDir = crashed.dir.replace(`-${process.pid}.`, `-${dead}.`);
    spawnSync('mv', [crashed.dir, crashedDir]);
    // The same of an older Slipway, which named no pid namespace.
    const older = await checkout({ app, sha: fixture.sha, workdir });
    const olderDir = older.dir.replace(/-\d+\.\d+-/, `-${dead}-`);
    spawnSync('mv', [older.dir, olderDir]);
    // A worker in another container sharing the workdir: its pid means nothing here, and its tree stays until old.
    const elsewhere = await checkout({ app, sha: fixture.sha, workdir });
    const elsewhereDir = elsewhere.dir.replace(/-\d+\.\d+-/, `-${dead}.1-`);
    spawnSync('mv', [elsewhere.dir, elsewhereDir]);
    const stray = join(workdir, 'builds', 'not-one-of-ours');
    mkdirSync(stray);
    const old = await checkout({ app, sha: fixture.sha, workdir });
    utimesSync(old.dir, new Date(), new Date(Date.now() - 48 * 3600_000));

    const lines: string[] = [];
    const { removed } = await prune({ workdir, log: (line) => lines.push(line) });
    expect(removed.sort()).toEqual([crashedDir, olderDir, stray, old.dir].sort());
    expect(existsSync(live.dir)).toBe(true);
    expect(existsSync(elsewhereDir)).toBe(true);
    expect(live.dir).toMatch(new RegExp(`-${process.pid}\\.${readlinkSync('/proc/self/ns/pid').match(/\d+/)![0]}-[0-9a-f]+$`));

    utimesSync(elsewhereDir, new Date(), new Date(Date.now() - 48 * 3600_000));
    expect((await prune({ workdir })).removed).toEqual([elsewhereDir]);
    const worktrees = readdirSync(join(workPaths(workdir, app.name).repo, 'worktrees'));
    expect(worktrees).toEqual([live.dir.split('/').pop()]);
    await live.cleanup();
  });

  it('clears what the git of a killed holder left when it breaks that holder\'s lock, so the next fetch works', async () => {
    const app = testApp({ repo: fixture.url });
    const first = await checkout({ app, sha: fixture.sha, workdir, branch: 'master' });
    await first.cleanup();
    // A worker killed mid-fetch: its lock on the cache (its pid gone) and git's lock of the ref it was updating.
    const paths = workPaths(workdir, app.name);
    const dead = spawnSync('true').pid!;
    writeFileSync(paths.lock, `${JSON.stringify({ host: hostname(), pid: dead, pidns: OWN_PID_NAMESPACE, token: 'killed' })}\n`);
    writeFileSync(join(paths.repo, 'refs', 'heads', 'master.lock'), '');
    await prune({ workdir });
    const next = await commitVersion(fixture, { version: 'after the kill' });
    const tree = await checkout({ app, sha: next, workdir, branch: 'master' });
    await tree.cleanup();
  });

  it('is harmless on an empty workdir', async () => {
    expect(await prune({ workdir: join(temp.path, 'empty') })).toEqual({ removed: [] });
  });
});
