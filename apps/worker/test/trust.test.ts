import { mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import type { SlipwayConfig } from '@slipway/config/types';
import { commitVersion, createFixtureRepo, git, type GitHttpServer, startGitHttpServer } from '@slipway/devstack/testing';
import type { Push } from '@slipway/queue/job-types';
import { bullJobId } from '@slipway/queue/deploy-queue';
import { createDeployWorker, type DeployWorker } from '../src/deploy-worker.js';
import { body, quietLogger, waitForJob, workerWorld, type WorkerWorld } from './support.js';

const docker = new Docker();

/** A verified push as the receiver queues it: what a holder of the app's secret can put in it. */
function pushOf(sha: string, repository: Push['repository'], provider: Push['provider'] = 'gitea'): Push {
  return { provider, delivery: `d-${sha.slice(0, 8)}`, ref: 'refs/heads/master', branch: 'master', sha, before: '0'.repeat(40), repository, pusher: null, message: null, compareUrl: null };
}

/** What a signed webhook can and cannot make the worker do. */
describe('the worker trusts the configuration, not the payload', () => {
  let world: WorkerWorld | undefined;
  let worker: DeployWorker | undefined;
  let server: GitHttpServer | undefined;
  afterEach(async () => {
    await worker?.close(5000);
    await server?.close();
    await world?.cleanup();
    worker = world = server = undefined;
  });

  /** A world whose app's master went from v1 (`repo.sha`) to v2, deployed and live. */
  async function liveAtV2() {
    world = await workerWorld();
    const [app] = world.apps;
    const repo = app!.repo;
    const sha2 = await commitVersion(repo, { version: `${app!.name} v2` });
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const v2 = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(world.queue, v2.id)).state).toBe('completed');
    return { world, app, repo, sha2, v2 };
  }

  it('a commit the configured branch does not reach (a fork\'s pull request head, served by id) fails not_on_branch; nothing is built', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    const repo = app!.repo;
    const forked = await commitVersion(repo, { version: 'from a fork', branch: 'scratch' });
    await git(repo.work, 'push', '-q', 'origin', `${forked}:refs/pull/7/head`, ':refs/heads/scratch');
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha: forked, ref: 'master', image: null, trigger: 'webhook', push: pushOf(forked, { fullName: 'acme/app', cloneUrl: repo.url, htmlUrl: null }) });
    const failed = await waitForJob(world.queue, job.id);
    expect(failed.state).toBe('failed');
    expect(failed.error).toBe(`not_on_branch: commit ${forked} is not on branch master of ${repo.url}: only commits the configured branch reaches are deployed`);
    expect(failed.steps.map((s) => s.step)).not.toContain('build');
    expect(await docker.getImage(`slipway/${app!.name}:${forked.slice(0, 12)}`).inspect().catch(() => null)).toBeNull();
    expect(await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app!.name}`] } })).toEqual([]);

    // The same rule for every job with a commit: the branch's own commit deploys.
    const ok = await world.queue.enqueue({ app: app!.name, sha: repo.sha, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(world.queue, ok.id)).state).toBe('completed');
  });

  it('a webhook job of a commit older than the live release (queued before it went live) is superseded by it, unless the push was forced and the branch is there', async () => {
    const { world, app, repo, sha2, v2 } = await liveAtV2();
    // What went live, and its history: the receiver turns later pushes of these away.
    expect(await world.queue.store.staleFor(app!.name, repo.sha)).toEqual({ stale: true, liveJob: v2.id, liveSha: sha2, back: false });

    const late = await world.queue.enqueue({ app: app!.name, sha: repo.sha, ref: 'master', image: null, trigger: 'webhook', push: pushOf(repo.sha, { fullName: 'acme/app', cloneUrl: repo.url, htmlUrl: null }, 'github') });
    const superseded = await waitForJob(world.queue, late.id);
    expect(superseded).toMatchObject({ state: 'superseded', supersededBy: v2.id });
    expect((await world.queue.store.readLog(late.id)).join('\n')).toContain(`commit ${repo.sha} is already live for ${app!.name} (job ${v2.id}), older than what is, or one an operator rolled back from`);
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v2\n`);

    // `forced` is the payload's word: a holder of the secret claiming a force push to an old commit rolls nothing back.
    const claimed = await world.queue.enqueue({ app: app!.name, sha: repo.sha, ref: 'master', image: null, trigger: 'webhook', push: { ...pushOf(repo.sha, { fullName: 'acme/app', cloneUrl: repo.url, htmlUrl: null }, 'github'), forced: true } });
    expect(await waitForJob(world.queue, claimed.id)).toMatchObject({ state: 'superseded', supersededBy: v2.id });
    expect((await world.queue.store.readLog(claimed.id)).join('\n')).toContain(`a forced push of ${repo.sha} says ${app!.name}'s branch moved back to it, but the branch is at ${sha2}: not rolled back`);
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v2\n`);

    // The branch really moved back: the forced push deploys the older commit.
    await git(repo.work, 'push', '-q', '--force', 'origin', `${repo.sha}:refs/heads/master`);
    const forced = await world.queue.enqueue({ app: app!.name, sha: repo.sha, ref: 'master', image: null, trigger: 'webhook', push: { ...pushOf(repo.sha, { fullName: 'acme/app', cloneUrl: repo.url, htmlUrl: null }, 'github'), delivery: 'd-forced', forced: true } });
    expect((await waitForJob(world.queue, forced.id)).state).toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
  });

  it('a webhook job of a commit older than the live one\'s remembered ancestry (a push long past, its body replayed) is asked of the clone cache, and superseded; one that moved the branch back, not called forced (Gitea), deploys if the branch is there', async () => {
    const { world, app, repo, sha2, v2 } = await liveAtV2();
    // What the receiver and the store remember of the live commit's history is its newest 2,000 commits: past them,
    // as here with none, only the clone cache knows the commit is older.
    await world.queue.redis.del(world.queue.store.keys.liveAncestry(app!.name));
    const replayed = await world.queue.enqueue({ app: app!.name, sha: repo.sha, ref: 'master', image: null, trigger: 'webhook', push: pushOf(repo.sha, { fullName: 'acme/app', cloneUrl: repo.url, htmlUrl: null }, 'github') });
    expect(await waitForJob(world.queue, replayed.id)).toMatchObject({ state: 'superseded', supersededBy: v2.id });
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v2\n`);

    // From v2 back to v1 (its head before is no ancestor of its commit: no fast-forward), the payload silent about
    // it: taken as a forced push is, so only once the branch is really there.
    const rewind = () => world.queue.enqueue({ app: app!.name, sha: repo.sha, ref: 'master', image: null, trigger: 'webhook', push: { ...pushOf(repo.sha, { fullName: 'acme/app', cloneUrl: repo.url, htmlUrl: null }), delivery: `d-${Math.random()}`, before: sha2 } });
    const claimed = await rewind();
    expect(await waitForJob(world.queue, claimed.id)).toMatchObject({ state: 'superseded', supersededBy: v2.id });
    expect((await world.queue.store.readLog(claimed.id)).join('\n')).toContain(`a push of ${repo.sha} says ${app!.name}'s branch moved back to it, but the branch is at ${sha2}`);
    await git(repo.work, 'push', '-q', '--force', 'origin', `${repo.sha}:refs/heads/master`);
    expect((await waitForJob(world.queue, (await rewind()).id)).state).toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
  });

  it('a claimed forced push queued behind a real one replaces it only if the branch is at its commit: the real push deploys, the claim ends stale', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    const repo = app!.repo;
    const repository = { fullName: 'acme/app', cloneUrl: repo.url, htmlUrl: null };
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const v1 = await world.queue.enqueue({ app: app!.name, sha: repo.sha, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(world.queue, v1.id)).state).toBe('completed');
    await worker.close(5000);

    // Both wait: the real push of v2, then a holder of the secret's claim that the branch was forced back to v1.
    const sha2 = await commitVersion(repo, { version: `${app!.name} v2` });
    const real = await world.queue.enqueue({ app: app!.name, sha: sha2, ref: 'master', image: null, trigger: 'webhook', push: { ...pushOf(sha2, repository, 'github'), before: repo.sha } });
    const claimed = await world.queue.enqueue({ app: app!.name, sha: repo.sha, ref: 'master', image: null, trigger: 'webhook', push: { ...pushOf(repo.sha, repository, 'github'), delivery: 'd-claimed', before: sha2, forced: true } });
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    expect((await waitForJob(world.queue, real.id)).state).toBe('completed');
    expect(await waitForJob(world.queue, claimed.id)).toMatchObject({ state: 'superseded' });
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v2\n`);
    expect(await world.queue.store.staleFor(app!.name, repo.sha)).toMatchObject({ stale: true, liveSha: sha2 });

    // A forced push the branch bears out replaces the push waiting before it, whose commit the branch has left.
    await worker.close(5000);
    const sha3 = await commitVersion(repo, { version: `${app!.name} v3` });
    const left = await world.queue.enqueue({ app: app!.name, sha: sha3, ref: 'master', image: null, trigger: 'webhook', push: { ...pushOf(sha3, repository, 'github'), before: sha2 } });
    await git(repo.work, 'push', '-q', '--force', 'origin', `${repo.sha}:refs/heads/master`);
    const back = await world.queue.enqueue({ app: app!.name, sha: repo.sha, ref: 'master', image: null, trigger: 'webhook', push: { ...pushOf(repo.sha, repository, 'github'), delivery: 'd-back', before: sha3, forced: true } });
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    expect(await waitForJob(world.queue, left.id)).toMatchObject({ state: 'superseded', supersededBy: back.id });
    expect((await waitForJob(world.queue, back.id)).state).toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
  });

  it('builds only a pushed tree under <workdir>/incoming: a job naming another directory (or a link out of incoming) fails and leaves it alone', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    // A directory a job record could name: the worker would build it, then delete it.
    const precious = join(world.dir, 'precious');
    mkdirSync(precious);
    writeFileSync(join(precious, 'Dockerfile'), 'FROM slipway/busybox:latest\n');
    mkdirSync(join(world.config.workdir, 'incoming'), { recursive: true });
    const link = join(world.config.workdir, 'incoming', `${app!.name}-link`);
    symlinkSync(precious, link);
    for (const sourceDir of [precious, link, join(world.config.workdir, 'incoming', '..', '..', 'precious')]) {
      const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'git-push', sourceDir });
      const failed = await waitForJob(world.queue, job.id);
      expect(failed.state, sourceDir).toBe('failed');
      expect(failed.error).toBe(`job ${job.id} names a source directory outside ${join(world.config.workdir, 'incoming')}; refused`);
      expect(readdirSync(precious)).toEqual(['Dockerfile']);
    }
    expect(await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app!.name}`] } })).toEqual([]);
  });

  it('no secret reaches a job\'s error, log or BullMQ\'s copy of it, whatever message a failure carries', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    // Refused when loaded from a file (see the config tests); a config built in code still must not leak it.
    const password = 'pw-in-the-url-0123';
    const config: SlipwayConfig = { ...world.config, apps: { [app!.name]: { ...world.config.apps[app!.name]!, repo: `ssh://deploy:${password}@127.0.0.1:1/a/b.git` } } };
    worker = createDeployWorker({ config, logger: quietLogger });
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    const failed = await waitForJob(world.queue, job.id);
    expect(failed.state).toBe('failed');
    expect(failed.error).toContain('ssh://***@127.0.0.1:1/a/b.git');
    const stored = JSON.stringify([
      await world.queue.redis.hgetall(world.queue.store.keys.job(job.id)),
      await world.queue.store.readLog(job.id),
      await world.queue.redis.hgetall(`${world.config.queue.prefix}:deploys:${bullJobId(job.id)}`),
    ]);
    expect(stored).toContain('***@127.0.0.1');
    expect(stored).not.toContain(password);
  });

  it('an owner/name app clones from the forge its config names, not from the clone URL in the payload', async () => {
    world = await workerWorld();
    const [app] = world.apps;
    // The configured forge serves <dir>/<app>.git as acme/<app>; another repository of the same name, elsewhere, holds other code.
    const evil = await createFixtureRepo(join(world.dir, 'evil'), { version: 'not what was configured', name: app!.name });
    server = await startGitHttpServer({ root: world.dir, mount: 'acme' });
    const config: SlipwayConfig = {
      ...world.config,
      forges: { ...world.config.forges, gitea: { api_url: `${server.url}/api/v1` } },
      apps: { [app!.name]: { ...world.config.apps[app!.name]!, repo: `acme/${app!.name}` } },
    };
    worker = createDeployWorker({ config, logger: quietLogger });
    const push = pushOf(app!.repo.sha, { fullName: `acme/${app!.name}`, cloneUrl: `${server.url}/acme/evil/${app!.name}.git`, htmlUrl: null });
    const job = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'webhook', push });
    const done = await waitForJob(world.queue, job.id);
    expect(done.state, done.error ?? '').toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
    expect(server.requests.some((r) => r.path.startsWith(`/acme/${app!.name}.git/`))).toBe(true);
    expect(server.requests.some((r) => r.path.includes('/evil/'))).toBe(false);
    expect(evil.sha).not.toBe(app!.repo.sha);

    // A job from no forge (the CLI) names no forge to clone from.
    const manual = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: 'master', image: null, trigger: 'cli' });
    const failed = await waitForJob(world.queue, manual.id);
    expect(failed.state).toBe('failed');
    expect(failed.error).toContain('names no forge to clone from');
    // But a rollback, or any image deploy, clones nothing: it deploys, whatever forge the app's repo names.
    const back = await world.queue.enqueue({ app: app!.name, sha: app!.repo.sha, ref: null, image: done.result!.image, trigger: 'rollback' });
    const rolledBack = await waitForJob(world.queue, back.id);
    expect(rolledBack.state, rolledBack.error ?? '').toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
  });
});
