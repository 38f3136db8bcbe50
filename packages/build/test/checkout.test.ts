import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { commitVersion, createFixtureRepo, type FixtureRepo, git, tempDir } from '@slipway/devstack/testing';
import { checkout } from '../src/checkout.js';
import { resolveRef } from '../src/resolve-ref.js';
import { ensureBareRepo, workPaths } from '../src/repo-cache.js';
import { testApp } from './test-app.js';

const temp = tempDir('slipway-checkout-');
const workdir = join(temp.path, 'work');
let fixture: FixtureRepo & { sha: string };

beforeAll(async () => {
  fixture = await createFixtureRepo(temp.path, { version: 'v1', name: 'app' });
});
afterAll(() => temp.remove());

/** Every object file of a repository (loose objects and packs). */
const objectFiles = (repo: string) => (readdirSync(join(repo, 'objects'), { recursive: true }) as string[]).filter((f) => /^[0-9a-f]{2}\/[0-9a-f]{38}$|\.pack$/.test(f));
const caught = (promise: Promise<unknown>) => promise.then(() => { throw new Error('expected a failure'); }, (err: unknown) => err);

describe('checkout', () => {
  it('gives a clean tree of exactly the commit, from a cache it then reuses, fetching only what is new', async () => {
    const app = testApp({ repo: fixture.url });
    const cache = workPaths(workdir, app.name).repo;
    const lines: string[] = [];
    const first = await checkout({ app, sha: fixture.sha, workdir, log: (line) => lines.push(line) });
    try {
      expect(readFileSync(join(first.dir, 'www', 'version'), 'utf8')).toBe('v1\n');
      expect(existsSync(join(first.dir, 'Dockerfile'))).toBe(true);
      expect(first.dir.startsWith(join(workdir, 'builds'))).toBe(true);
      expect(lines.some((line) => line.startsWith('fetching '))).toBe(true);
      // Progress meters are not logged line by line, only their final line.
      expect(lines.filter((line) => /\d+% \(/.test(line) && !/done/.test(line))).toEqual([]);
    } finally {
      await first.cleanup();
    }
    expect(existsSync(first.dir)).toBe(false);
    const inode = statSync(cache).ino;
    const firstObjects = objectFiles(cache);
    expect(firstObjects.length).toBeGreaterThan(0);
    writeFileSync(join(cache, 'slipway-test-marker'), 'still the same cache\n');

    // The same commit again: nothing to fetch.
    lines.length = 0;
    const again = await checkout({ app, sha: fixture.sha, workdir, log: (line) => lines.push(line) });
    await again.cleanup();
    expect(lines.some((line) => line.startsWith('fetching'))).toBe(false);
    expect(lines.join('\n')).toContain('already in the clone cache');

    // A new commit: one fetch into the same cache, every object already there kept.
    const sha2 = await commitVersion(fixture, { version: 'v2' });
    lines.length = 0;
    const second = await checkout({ app, sha: sha2, workdir, log: (line) => lines.push(line) });
    try {
      expect(readFileSync(join(second.dir, 'www', 'version'), 'utf8')).toBe('v2\n');
      expect(lines.filter((line) => line.startsWith('fetching '))).toHaveLength(1);
      expect(lines.join('\n')).toMatch(/master\s+->\s+master/);
    } finally {
      await second.cleanup();
    }
    expect(statSync(cache).ino).toBe(inode);
    expect(readFileSync(join(cache, 'slipway-test-marker'), 'utf8')).toBe('still the same cache\n');
    const secondObjects = objectFiles(cache);
    expect(secondObjects).toEqual(expect.arrayContaining(firstObjects));
    // The new commit, its trees and the changed files only: nothing fetched twice.
    expect(secondObjects.length - firstObjects.length).toBeGreaterThan(0);
    expect(secondObjects.length - firstObjects.length).toBeLessThan(firstObjects.length);
    // Cleaned-up trees are forgotten by the cache too.
    const worktrees = join(cache, 'worktrees');
    const third = await checkout({ app, sha: sha2, workdir });
    await third.cleanup();
    await resolveRef({ app, ref: 'master', workdir });
    expect(existsSync(worktrees) ? readdirSync(worktrees) : []).toEqual([]);
  });

  it('fails with sha_not_found for a commit the repository does not have', async () => {
    const app = testApp({ repo: fixture.url });
    const err = await caught(checkout({ app, sha: 'f'.repeat(40), workdir }));
    expect(isSlipwayError(err, 'sha_not_found')).toBe(true);
    // With the branch a deploy checks against, likewise: not in the repository at all is not 'not on the branch'.
    const onBranch = await caught(checkout({ app, sha: 'e'.repeat(40), workdir, branch: 'master' }));
    expect(isSlipwayError(onBranch, 'sha_not_found'), String(onBranch)).toBe(true);
    expect(readdirSync(join(workdir, 'builds')).filter((d) => d.startsWith(app.name))).toEqual([]);
  });

  it('stops a checkout past its timeout (a remote that keeps sending a trickle is never idle): unavailable, no tree left', async () => {
    // A remote that answers, then sends a byte now and then, for ever.
    const trickles = new Set<NodeJS.Timeout>();
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/x-git-upload-pack-advertisement' });
      trickles.add(setInterval(() => res.write('0'), 200));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const app = testApp({ repo: `http://127.0.0.1:${(server.address() as AddressInfo).port}/slow.git` });
      const started = Date.now();
      const err = await caught(checkout({ app, sha: fixture.sha, workdir, timeoutMs: 1500 }));
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(new RegExp(`^git was stopped: the clone cache of ${app.name} was in use past 1\\.5 s \\(the app's build_timeout_s\\), waiting for its lock or fetching`));
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(readdirSync(join(workdir, 'builds')).filter((d) => d.startsWith(app.name))).toEqual([]);
    } finally {
      for (const trickle of trickles) clearInterval(trickle);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('starts a clone cache again that holds an object git cannot read (cut short by a crash), instead of failing every deploy', async () => {
    const app = testApp({ repo: fixture.url });
    await (await checkout({ app, sha: fixture.sha, workdir })).cleanup();
    // Every object of the cache cut short, as a crash mid-write may leave one.
    const { repo } = workPaths(workdir, app.name);
    for (const file of objectFiles(repo)) {
      const path = join(repo, 'objects', file);
      chmodSync(path, 0o644);
      writeFileSync(path, readFileSync(path).subarray(0, 5));
    }
    // Without a branch its own objects are asked first (a fetch from a local path cannot tell whose words it prints).
    const err = await caught(checkout({ app, sha: fixture.sha, workdir }));
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(new RegExp(`^the clone cache of ${app.name} was damaged`));
    // Tried again: cloned afresh.
    const again = await checkout({ app, sha: fixture.sha, workdir, branch: 'master' });
    expect(existsSync(join(again.dir, 'Dockerfile'))).toBe(true);
    await again.cleanup();
  });

  it('a commit the remote has but cannot send is what git said, not sha_not_found', async () => {
    const app = testApp({ repo: fixture.url });
    // A commit on no branch (a pull request head), whose file the remote then loses.
    const orphan = await commitVersion(fixture, { version: 'lost on the remote', branch: 'scratch' });
    await git(fixture.work, 'push', '-q', 'origin', `${orphan}:refs/pull/8/head`, ':refs/heads/scratch');
    await git(fixture.work, 'reset', '-q', '--hard', 'origin/master');
    const blob = (await git(fixture.work, 'rev-parse', `${orphan}:www/version`)).stdout.trim();
    rmSync(join(fixture.bare, 'objects', blob.slice(0, 2), blob.slice(2)));
    const err = await caught(checkout({ app, sha: orphan, workdir }));
    expect(isSlipwayError(err, 'sha_not_found'), String(err)).toBe(false);
    expect((err as Error).message.split('\n', 1)[0]).toMatch(/^git fetch failed: /);
    expect((err as Error).message).toMatch(/unable to read|corruption/);
  });

  it('with a branch, checks out only commits that branch reaches: a pull request head served by id is not_on_branch', async () => {
    const app = testApp({ repo: fixture.url });
    // A fork's pull request: on the forge under refs/pull/<n>/head, fetchable by id, on no branch.
    const forked = await commitVersion(fixture, { version: 'from a fork', branch: 'scratch' });
    await git(fixture.work, 'push', '-q', 'origin', `${forked}:refs/pull/7/head`, ':refs/heads/scratch');
    await git(fixture.work, 'reset', '-q', '--hard', 'origin/master');

    const onMaster = await checkout({ app, sha: fixture.sha, workdir, branch: 'master' });
    await onMaster.cleanup();
    const err = await caught(checkout({ app, sha: forked, workdir, branch: 'master' }));
    expect(isSlipwayError(err, 'not_on_branch'), String(err)).toBe(true);
    expect((err as Error).message).toContain(`commit ${forked} is not on branch master`);
    expect(readdirSync(join(workdir, 'builds')).filter((d) => d.startsWith(app.name))).toEqual([]);
    // Without the rule a checkout would fetch it by id: what a signed webhook naming it used to deploy.
    const anyCommit = await checkout({ app, sha: forked, workdir });
    await anyCommit.cleanup();

    const refused = await caught(resolveRef({ app, ref: forked.slice(0, 10), workdir, onBranch: 'master' }));
    expect(isSlipwayError(refused, 'not_on_branch')).toBe(true);
    expect(await resolveRef({ app, ref: 'master', workdir, onBranch: 'master' })).toBe(await resolveRef({ app, ref: 'master', workdir }));
  });

  it.each([
    ['--upload-pack=touch /tmp/x'],
    ['$(id)'],
    ['HEAD'],
    ['master'],
    ['0123456'],
    ['ａ'.repeat(40)],
    [`${'a'.repeat(39)}\n`],
    [`--end-of-options${'a'.repeat(24)}`],
  ])('refuses the sha %j before git runs', async (sha) => {
    const app = testApp({ repo: fixture.url });
    const err = await caught(checkout({ app, sha, workdir }));
    expect(isSlipwayError(err, 'invalid_input')).toBe(true);
    expect(existsSync(workPaths(workdir, app.name).repo)).toBe(false);
  });

  it('refuses a hostile repository address before git runs', async () => {
    const marker = join(temp.path, 'pwned');
    const app = testApp({ repo: `ext::sh -c touch% ${marker}` });
    const err = await caught(checkout({ app, sha: fixture.sha, workdir }));
    expect(isSlipwayError(err, 'invalid_repo_url')).toBe(true);
    expect(existsSync(marker)).toBe(false);
  });

  it('reports a missing repository as repo_not_found, not retryable', async () => {
    const app = testApp({ repo: `file://${join(temp.path, 'nope.git')}` });
    const err = await caught(checkout({ app, sha: fixture.sha, workdir }));
    expect(isSlipwayError(err, 'repo_not_found')).toBe(true);
  });

  it.each([
    ['http on a closed port', 'http://127.0.0.1:1/app.git'],
    ['ssh on a closed port', 'ssh://git@127.0.0.1:1/srv/app.git'],
    ['scp-like ssh to a host with no ssh server', 'git@127.0.0.1:srv/app.git'],
  ])('reports %s as UnavailableError (retryable)', async (_name, repo) => {
    const app = testApp({ repo });
    const err = await caught(checkout({ app, sha: fixture.sha, workdir }));
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message.split('\n', 1)[0]).toMatch(/is unreachable: .*(Failed to connect|Connection refused)/);
  });

  it('stops a git that a server keeps waiting, after the idle timeout, retryably', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const app = testApp({ repo: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/app.git` });
      const started = Date.now();
      const err = await caught(checkout({ app, sha: fixture.sha, workdir, tuning: { gitIdleTimeoutMs: 700 } }));
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toContain('printed nothing for 700 ms');
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('serialises concurrent work on one cache: checkouts and ref resolutions all succeed', async () => {
    const app = testApp({ repo: fixture.url });
    const head = await resolveRef({ app, ref: 'master', workdir });
    const results = await Promise.all([
      checkout({ app, sha: fixture.sha, workdir }),
      resolveRef({ app, ref: 'master', workdir }),
      checkout({ app, sha: head, workdir }),
      resolveRef({ app, ref: fixture.sha.slice(0, 9), workdir }),
      checkout({ app, sha: fixture.sha, workdir }),
    ]);
    const [a, ref1, b, ref2, c] = results as [Awaited<ReturnType<typeof checkout>>, string, Awaited<ReturnType<typeof checkout>>, string, Awaited<ReturnType<typeof checkout>>];
    expect(ref1).toBe(head);
    expect(ref2).toBe(fixture.sha);
    expect(new Set([a.dir, b.dir, c.dir]).size).toBe(3);
    await Promise.all([a.cleanup(), b.cleanup(), c.cleanup()]);
    expect(existsSync(workPaths(workdir, app.name).lock)).toBe(false);
  });

  it('recovers a lock left by a process that died, and the git lock files it left', async () => {
    const app = testApp({ repo: fixture.url });
    const paths = workPaths(workdir, app.name);
    await (await checkout({ app, sha: fixture.sha, workdir })).cleanup();
    const dead = spawnSync('true').pid!;
    writeFileSync(paths.lock, JSON.stringify({ host: (await import('node:os')).hostname(), pid: dead, token: 'dead' }));
    writeFileSync(join(paths.repo, 'packed-refs.lock'), '');
    const lines: string[] = [];
    const started = Date.now();
    const sha2 = await commitVersion(fixture, { version: 'v3' });
    const tree = await checkout({ app, sha: sha2, workdir, log: (line) => lines.push(line) });
    await tree.cleanup();
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(lines.join('\n')).toContain(`removed a stale lock of pid ${dead}`);
    expect(existsSync(join(paths.repo, 'packed-refs.lock'))).toBe(false);
  });

  it('removes a git lock file a git killed under a live worker left (older than a minute), and leaves a fresh one alone', async () => {
    const app = testApp({ repo: fixture.url });
    const paths = workPaths(workdir, app.name);
    await (await checkout({ app, sha: fixture.sha, workdir })).cleanup();
    // The OOM killer took git mid-fetch; the worker released the repository's lock as usual.
    const left = join(paths.repo, 'refs', 'heads', 'master.lock');
    mkdirSync(dirname(left), { recursive: true });
    writeFileSync(left, '');
    const old = new Date(Date.now() - 5 * 60_000);
    utimesSync(left, old, old);
    // One of a git running now (no ref a fetch of the branches touches).
    const fresh = join(paths.repo, 'refs', 'tags', 'fresh.lock');
    mkdirSync(dirname(fresh), { recursive: true });
    writeFileSync(fresh, '');
    // And a build's checkout, whose git may run long: its admin folder is left alone, whatever its age.
    const admin = join(paths.repo, 'worktrees', 'a-build');
    const building = join(admin, 'index.lock');
    const buildTree = join(temp.path, 'a-build-tree');
    mkdirSync(admin, { recursive: true });
    mkdirSync(buildTree, { recursive: true });
    writeFileSync(join(buildTree, '.git'), `gitdir: ${admin}\n`);
    writeFileSync(join(admin, 'gitdir'), `${join(buildTree, '.git')}\n`);
    writeFileSync(join(admin, 'commondir'), '../..\n');
    writeFileSync(join(admin, 'HEAD'), `${fixture.sha}\n`);
    writeFileSync(building, '');
    utimesSync(building, old, old);
    const lines: string[] = [];
    const sha2 = await commitVersion(fixture, { version: 'v4' });
    await (await checkout({ app, sha: sha2, workdir, log: (line) => lines.push(line) })).cleanup();
    expect(lines.join('\n')).toContain(`removed ${left}, left by an interrupted git`);
    expect(existsSync(left)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(building)).toBe(true);
    rmSync(fresh);
    rmSync(admin, { recursive: true });
    rmSync(buildTree, { recursive: true });
  });

  it('keeps the clone cache when a cancel stops git asking whether it is one; starts over only a cache git says is not', async () => {
    const app = testApp({ repo: fixture.url });
    const paths = workPaths(workdir, app.name);
    await (await checkout({ app, sha: fixture.sha, workdir })).cleanup();
    const objects = objectFiles(paths.repo);
    expect(objects.length).toBeGreaterThan(0);
    const lines: string[] = [];
    const cancelled = new AbortController();
    const reason = new Error('job cancelled');
    cancelled.abort(reason);
    await expect(ensureBareRepo(paths.repo, (line) => lines.push(line), { gitDir: paths.repo, signal: cancelled.signal })).rejects.toBe(reason);
    expect(lines).toEqual([]);
    expect(objectFiles(paths.repo)).toEqual(objects);

    // Named as an app may be: git's answer quotes the path, and "spawn" in it is no sign that git did not run.
    const damaged = join(temp.path, 'spawn-api.git');
    mkdirSync(damaged);
    writeFileSync(join(damaged, 'HEAD'), 'not a ref\n');
    await ensureBareRepo(damaged, (line) => lines.push(line), { gitDir: damaged });
    expect(lines).toEqual([`the clone cache ${damaged} is damaged; starting it again`]);
    expect((await git(damaged, 'rev-parse', '--is-bare-repository')).stdout.trim()).toBe('true');
  });

  it('aborts a checkout when its signal fires', async () => {
    const app = testApp({ repo: fixture.url });
    const controller = new AbortController();
    const reason = new Error('job cancelled');
    controller.abort(reason);
    await expect(checkout({ app, sha: fixture.sha, workdir, signal: controller.signal })).rejects.toBe(reason);
  });
});
