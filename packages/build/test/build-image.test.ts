import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppConfig } from '@slipway/config/types';
import { MAX_LINE_BYTES } from '@slipway/core/logger';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { AFTER_OUTPUT_LINE, createFixtureRepo, ENDLESS_LINE, type FixtureRepo, git, HUGE_LINE_UNIT, tempDir, watchEventLoop, type EventLoopReport } from '@slipway/devstack/testing';
import { BuildError } from '../src/build-error.js';
import { buildImage } from '../src/build-image.js';
import { checkout } from '../src/checkout.js';
import { testApp } from './test-app.js';

const docker = new Docker();
const temp = tempDir('slipway-build-');
const workdir = join(temp.path, 'work');
const images = new Set<string>();
let fixture: FixtureRepo & { sha: string };
let broken: FixtureRepo & { sha: string };
let custom: FixtureRepo & { sha: string };
const marker = `slow-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  fixture = await createFixtureRepo(temp.path, { version: 'v1', name: 'app' });
  broken = await createFixtureRepo(temp.path, { version: 'v1', name: 'broken', variant: 'broken-build' });
  // A repository of our own: a .dockerignore with an exception, a second Dockerfile, a build argument.
  const base = await createFixtureRepo(temp.path, { version: 'v1', name: 'custom' });
  const work = base.work;
  writeFileSync(join(work, 'Dockerfile'), 'FROM slipway/busybox:latest\nARG GREETING\nCOPY . /ctx\nRUN echo "greeting=$GREETING" && find /ctx -mindepth 1 | sort\n');
  writeFileSync(join(work, '.dockerignore'), 'secret.env\nlogs\n!logs/keep.log\n');
  writeFileSync(join(work, 'secret.env'), 'API_KEY=do-not-ship\n');
  writeFileSync(join(work, 'kept.txt'), 'kept\n');
  mkdirSync(join(work, 'logs'), { recursive: true });
  writeFileSync(join(work, 'logs', 'a.log'), 'a\n');
  writeFileSync(join(work, 'logs', 'keep.log'), 'keep\n');
  mkdirSync(join(work, 'docker'), { recursive: true });
  writeFileSync(join(work, 'docker', 'slow.Dockerfile'), `FROM slipway/busybox:latest\nRUN echo first-line && sleep 2 && echo second-line\n`);
  writeFileSync(join(work, 'docker', 'cancel.Dockerfile'), `FROM slipway/busybox:latest\nRUN echo ${marker} && sleep 60\n`);
  writeFileSync(join(work, 'docker', 'labelled.Dockerfile'), 'FROM slipway/busybox:latest\nLABEL slipway.step=unit\n');
  await git(work, 'add', '-A');
  await git(work, 'commit', '-q', '-m', 'custom build');
  await git(work, 'push', '-q', 'origin', 'HEAD:refs/heads/master');
  custom = { ...base, sha: (await git(work, 'rev-parse', 'HEAD')).stdout.trim() };
});

afterAll(async () => {
  for (const image of images) await docker.getImage(image).remove({ force: true }).catch(() => {});
  temp.remove();
});

/** Checks out `sha` of `app`, builds it, removes the tree. */
async function build(app: AppConfig, sha: string, extra: { log?: (line: string) => void; signal?: AbortSignal; docker?: Docker } = {}) {
  const tree = await checkout({ app, sha, workdir });
  try {
    images.add(`slipway/${app.name}:${sha.slice(0, 12)}`);
    return await buildImage({ app, dir: tree.dir, sha, docker: extra.docker ?? docker, log: extra.log, signal: extra.signal });
  } finally {
    await tree.cleanup();
  }
}

const caught = (promise: Promise<unknown>) => promise.then(() => { throw new Error('expected a failure'); }, (err: unknown) => err);

describe('buildImage', () => {
  it('builds the sample app into slipway/<app>:<sha12> with its labels, streaming the log; a rebuild comes from the cache', async () => {
    const app = testApp({ repo: fixture.url });
    const lines: string[] = [];
    const steps: number[] = [];
    const tree = await checkout({ app, sha: fixture.sha, workdir });
    let built;
    try {
      built = await buildImage({ app, dir: tree.dir, sha: fixture.sha, docker, log: (line) => lines.push(line), onStep: (step) => steps.push(step.index) });
      images.add(built.image);
    } finally {
      await tree.cleanup();
    }
    expect(built.image).toBe(`slipway/${app.name}:${fixture.sha.slice(0, 12)}`);
    const info = await docker.getImage(built.image).inspect();
    expect(info.Id).toBe(built.id);
    expect(info.Config.Labels).toMatchObject({ 'slipway.app': app.name, 'slipway.sha': fixture.sha });
    expect(built.totalSteps).toBeGreaterThanOrEqual(5);
    expect(steps).toEqual(Array.from({ length: built.totalSteps }, (_, i) => i + 1));
    expect(lines).toContain('Step 1/' + built.totalSteps + ' : FROM slipway/busybox:latest');
    expect(lines.some((line) => line.startsWith('Successfully tagged'))).toBe(true);

    const again = await build(app, fixture.sha);
    expect(again.image).toBe(built.image);
    expect(again.totalSteps).toBe(built.totalSteps);
    // Everything but FROM from the layer cache, though the tree was checked out anew.
    expect(again.cachedSteps).toBe(built.totalSteps - 1);
  });

  it('fails with a BuildError naming the failing step and carrying its output', async () => {
    const app = testApp({ repo: broken.url });
    const lines: string[] = [];
    const err = await caught(build(app, broken.sha, { log: (line) => lines.push(line) }));
    expect(err).toBeInstanceOf(BuildError);
    const failure = err as BuildError;
    expect(failure.code).toBe('build_failed');
    const [first, ...rest] = failure.message.split('\n');
    expect(first).toMatch(/^Step 2\/\d+ : RUN echo "compiling assets" .* failed \(exit 1\)$/);
    expect(rest).toContain('error: asset pipeline failed');
    expect(lines).toContain('error: asset pipeline failed');
    await expect(docker.getImage(`slipway/${app.name}:${broken.sha.slice(0, 12)}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('honours .dockerignore (with an exception), never sends .git, and passes build arguments', async () => {
    const app = testApp({ repo: custom.url, build_args: { GREETING: 'hello-from-config' } });
    const lines: string[] = [];
    await build(app, custom.sha, { log: (line) => lines.push(line) });
    const listed = lines.filter((line) => line.startsWith('/ctx/'));
    expect(listed).toEqual(expect.arrayContaining(['/ctx/kept.txt', '/ctx/logs/keep.log', '/ctx/Dockerfile', '/ctx/.dockerignore', '/ctx/www/index.html']));
    expect(listed).not.toContain('/ctx/secret.env');
    expect(listed).not.toContain('/ctx/logs/a.log');
    expect(listed.filter((line) => line.startsWith('/ctx/.git'))).toEqual([]);
    expect(lines).toContain('greeting=hello-from-config');
  });

  it('streams each line as Docker prints it, not at the end', async () => {
    const app = testApp({ repo: custom.url, dockerfile: 'docker/slow.Dockerfile' });
    const seen = new Map<string, number>();
    await build(app, custom.sha, { log: (line) => seen.set(line, Date.now()) });
    const done = Date.now();
    expect(seen.has('first-line')).toBe(true);
    expect(done - seen.get('first-line')!).toBeGreaterThan(1500);
    expect(seen.get('second-line')! - seen.get('first-line')!).toBeGreaterThan(1500);
  });

  it('aborts the build when its signal fires, leaving no build container running', async () => {
    const app = testApp({ repo: custom.url, dockerfile: 'docker/cancel.Dockerfile' });
    const controller = new AbortController();
    const reason = new Error('job cancelled');
    const started = Date.now();
    const err = await caught(build(app, custom.sha, {
      signal: controller.signal,
      log: (line) => {
        if (line === marker) controller.abort(reason);
      },
    }));
    expect(err).toBe(reason);
    expect(Date.now() - started).toBeLessThan(30_000);
    const leftovers = async () => (await docker.listContainers({ all: true })).filter((c) => c.Command.includes(marker));
    const deadline = Date.now() + 20_000;
    while ((await leftovers()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(await leftovers()).toEqual([]);
  });

  it('refuses an image that sets a label Slipway sets on its containers (slipway.step) (its live containers would be taken for test steps and swept)', async () => {
    const app = testApp({ repo: custom.url, dockerfile: 'docker/labelled.Dockerfile' });
    const err = await caught(build(app, custom.sha));
    expect(err).toBeInstanceOf(BuildError);
    expect((err as Error).message).toContain('sets the label slipway.step');
  });

  it('fails with a BuildError when the configured Dockerfile is not in the commit', async () => {
    const app = testApp({ repo: fixture.url, dockerfile: 'docker/missing.Dockerfile' });
    const err = await caught(build(app, fixture.sha));
    expect(err).toBeInstanceOf(BuildError);
    expect((err as Error).message).toContain('docker/missing.Dockerfile');
  });

  it('reports an unreachable Docker as UnavailableError', async () => {
    const app = testApp({ repo: fixture.url });
    const nowhere = new Docker({ socketPath: join(temp.path, 'no-such-docker.sock') });
    const err = await caught(build(app, fixture.sha, { docker: nowhere }));
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).service).toBe('docker');
  });
});

/** How the event loop fared while `run` ran. */
async function watched<T>(run: () => Promise<T>): Promise<{ result: T; loop: EventLoopReport }> {
  const watch = watchEventLoop();
  try {
    return { result: await run(), loop: watch.stop() };
  } finally {
    watch.stop();
  }
}

describe('buildImage and hostile builds', () => {
  const LINE_BYTES = 4 * 1024 * 1024;
  const cut = `${HUGE_LINE_UNIT.repeat(MAX_LINE_BYTES / 2)}… [line cut: ${LINE_BYTES.toLocaleString('en-US')} bytes]`;

  it.each([
    { variant: 'huge-line' as const, after: true },
    { variant: 'huge-line-unterminated' as const, after: false },
  ])('$variant: a 4 MB line is cut to 16 KB with its size, and never holds the event loop', async ({ variant, after }) => {
    // A version of its own: the hostile step must run, not come from Docker's layer cache.
    const repo = await createFixtureRepo(temp.path, { version: `v-${variant}-${randomBytes(4).toString('hex')}`, name: `hostile-${variant}`, variant, lineBytes: LINE_BYTES });
    const app = testApp({ repo: repo.url });
    const lines: string[] = [];
    const { result, loop } = await watched(() => build(app, repo.sha, { log: (line) => lines.push(line) }));
    console.log(`${variant}: event loop ${JSON.stringify(loop)}`);
    expect(result.image).toBe(`slipway/${app.name}:${repo.sha.slice(0, 12)}`);
    expect(lines).toContain(cut);
    expect(Math.max(...lines.map((line) => Buffer.byteLength(line)))).toBeLessThanOrEqual(MAX_LINE_BYTES + 40);
    if (after) expect(lines[lines.indexOf(cut) + 1]).toBe(AFTER_OUTPUT_LINE);
    expect(loop.maxBlockedMs).toBeLessThan(100);
    expect(loop.maxGapMs).toBeLessThan(1000);
  });

  it('stops a build that runs past build_timeout_s: build_timeout, not retried, no build container left', async () => {
    const repo = await createFixtureRepo(temp.path, { version: `v-endless-${randomBytes(4).toString('hex')}`, name: 'endless', variant: 'endless-output' });
    // Long enough for a loaded machine to send the context and start the step (seen: over 8 s at a load of 16 on two cores).
    const app = testApp({ repo: repo.url, build_timeout_s: 10 });
    let printed = 0;
    const notes: string[] = [];
    const started = Date.now();
    const { result: err, loop } = await watched(() => caught(build(app, repo.sha, {
      log: (line) => {
        if (line === ENDLESS_LINE) printed++;
        else notes.push(line);
      },
    })));
    const took = Date.now() - started;
    expect(err).toBeInstanceOf(SlipwayError);
    expect(err).not.toBeInstanceOf(UnavailableError);
    expect((err as SlipwayError).code).toBe('build_timeout');
    expect((err as Error).message).toContain('10 s');
    expect((err as Error).message).toContain(`apps.${app.name}.build_timeout_s`);
    expect(took).toBeGreaterThanOrEqual(10_000);
    expect(took).toBeLessThan(30_000);
    expect(notes.at(-1)).toContain('build_timeout_s');
    console.log(`endless output: ${printed} lines in ${took} ms, event loop ${JSON.stringify(loop)}; last notes: ${JSON.stringify(notes.slice(-4))}`);
    expect(loop.maxBlockedMs).toBeLessThan(100);
    expect(loop.maxGapMs).toBeLessThan(1000);
    const leftovers = async () => (await docker.listContainers({ all: true })).filter((c) => c.Command.includes('build-output.sh'));
    const deadline = Date.now() + 20_000;
    while ((await leftovers()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(await leftovers()).toEqual([]);
  });
});
