import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { commitVersion, type FixtureRepo } from '@slipway/devstack/testing';
import { createDeployWorker, type DeployWorker } from '../src/deploy-worker.js';
import { body, quietLogger, waitForJob, workerWorld, type WorkerWorld } from './support.js';

const docker = new Docker();

/** The app's containers on the host, step containers included. */
const containersOf = (app: string) => docker.listContainers({ all: true, filters: { label: [`slipway.app=${app}`] } });

/** Labels of every container of `app` started from now until `stop()`: what ever ran, however briefly. */
async function watchStarts(app: string): Promise<{ stop(): Array<Record<string, string>> }> {
  const started: Array<Record<string, string>> = [];
  const stream = (await docker.getEvents({ filters: { type: ['container'], event: ['start'], label: [`slipway.app=${app}`] } })) as Readable;
  let rest = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop()!;
    for (const line of lines) if (line.trim()) started.push((JSON.parse(line) as { Actor: { Attributes: Record<string, string> } }).Actor.Attributes);
  });
  return {
    stop() {
      stream.destroy();
      return started;
    },
  };
}

/** Commits the app at `version` with a `.slipway.yml` of this text beside it. */
async function commitWithFile(repo: FixtureRepo, version: string, text: string): Promise<string> {
  writeFileSync(join(repo.work, '.slipway.yml'), text);
  return commitVersion(repo, { version });
}

const deploy = (world: WorkerWorld, app: string, sha: string) => world.queue.enqueue({ app, sha, ref: 'master', image: null, trigger: 'cli' });

describe('test steps between the build and the rollout', () => {
  let world: WorkerWorld | undefined;
  let worker: DeployWorker | undefined;
  afterEach(async () => {
    await worker?.close(5000);
    await world?.cleanup();
    worker = undefined;
    world = undefined;
  });

  it('a push whose step passes deploys: the step output is in the log between build and rollout, and on the timeline', async () => {
    world = await workerWorld({ app: { steps: [{ name: 'unit', command: ['sh', '-c', 'echo "testing $(cat /www/version)"; test -f /www/healthz'], env: { CI: 'true' } }] } });
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const done = await waitForJob(world.queue, (await deploy(world, app!.name, app!.repo.sha)).id);
    expect(done.state, done.error ?? '').toBe('completed');
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
    expect(done.steps.map((s) => s.step)).toEqual(['queued', 'checkout', 'build', 'test', 'start', 'health', 'switch', 'drain', 'done']);
    expect(done.tests).toEqual([expect.objectContaining({ name: 'unit', exitCode: 0, outcome: 'passed', image: `slipway/${app!.name}:${app!.repo.sha.slice(0, 12)}` })]);
    expect(done.tests![0]!.durationMs).toBeGreaterThan(0);

    const log = await world.queue.store.readLog(done.id);
    const at = (text: string) => log.findIndex((l) => l.includes(text));
    expect(at('==> build')).toBeGreaterThanOrEqual(0);
    expect(at(`unit | testing ${app!.name} v1`)).toBeGreaterThan(at('==> build'));
    expect(at('==> rollout')).toBeGreaterThan(at(`unit | testing ${app!.name} v1`));
    expect(log[at('step unit passed')]).toMatch(/^step unit passed \(exit 0\) in \d+\.\d s$/);
    expect((await containersOf(app!.name)).filter((c) => c.Labels['slipway.step'])).toEqual([]);
  });

  it('a push whose step fails: failed naming the step and exit code, the previous release serving, no container of it ever started, no step container left', async () => {
    world = await workerWorld({ app: { steps: [{ name: 'unit', command: ['sh', '-c', 'cat /www/version; grep -q v1 /www/version'] }] } });
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    expect((await waitForJob(world.queue, (await deploy(world, app!.name, app!.repo.sha)).id)).state).toBe('completed');

    const sha2 = await commitVersion(app!.repo, { version: `${app!.name} v2` });
    const starts = await watchStarts(app!.name);
    const failed = await waitForJob(world.queue, (await deploy(world, app!.name, sha2)).id);
    const started = starts.stop();
    expect(failed.state).toBe('failed');
    expect(failed.error).toBe('step_failed: unit exited 1');
    expect(failed.step).toBe('test');
    expect(failed.tests).toEqual([expect.objectContaining({ name: 'unit', exitCode: 1, outcome: 'failed' })]);
    expect(await body(`${app!.url}/`)).toBe(`${app!.name} v1\n`);
    // The only container of the new commit that ever ran is the step's.
    expect(started.filter((labels) => labels['slipway.sha'] === sha2).map((labels) => labels['slipway.step'])).toEqual(['unit']);
    const left = await containersOf(app!.name);
    expect(left.map((c) => c.Labels['slipway.sha'])).toEqual([app!.repo.sha, app!.repo.sha]);
    expect((await world.queue.store.readLog(failed.id)).join('\n')).toContain(`unit | ${app!.name} v2`);
  });

  it('a step that sleeps past its timeout_s: step_timeout, its container gone, nothing rolled out', async () => {
    world = await workerWorld({ app: { steps: [{ name: 'slow', command: ['sleep', '120'], timeout_s: 2 }] } });
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const failed = await waitForJob(world.queue, (await deploy(world, app!.name, app!.repo.sha)).id);
    expect(failed.state).toBe('failed');
    expect(failed.error).toMatch(/^step_timeout: slow ran past its timeout_s \(2 s\)/);
    expect(failed.tests).toEqual([expect.objectContaining({ name: 'slow', exitCode: null, outcome: 'timeout' })]);
    expect(await containersOf(app!.name)).toEqual([]);
  });

  it('steps from the commit\'s .slipway.yml; the config\'s list wins over it; a file with an unknown key fails the job with the key path, before any build', async () => {
    world = await workerWorld({ apps: 2 });
    const [fromFile, fromConfig] = world.apps;
    const file = 'steps:\n  - name: from-file\n    command: [sh, -c, "echo from the repository: ${HOME}"]\n';
    world.config.apps[fromConfig!.name]!.steps = [{ name: 'from-config', command: ['echo', 'from the config'], env: {}, timeout_s: 60 }];
    const shaA = await commitWithFile(fromFile!.repo, `${fromFile!.name} v2`, file);
    const shaB = await commitWithFile(fromConfig!.repo, `${fromConfig!.name} v2`, file);
    worker = createDeployWorker({ config: world.config, logger: quietLogger, concurrency: 2 });
    const [a, b] = [await deploy(world, fromFile!.name, shaA), await deploy(world, fromConfig!.name, shaB)];
    const [doneA, doneB] = [await waitForJob(world.queue, a.id), await waitForJob(world.queue, b.id)];
    expect([doneA.state, doneB.state], `${doneA.error} ${doneB.error}`).toEqual(['completed', 'completed']);
    const logA = (await world.queue.store.readLog(a.id)).join('\n');
    expect(logA).toContain(`steps from .slipway.yml of commit ${shaA.slice(0, 12)}: from-file`);
    // Never interpolated: the pusher's ${HOME} reaches the step's shell as written.
    expect(logA).toMatch(/from-file \| from the repository: \//);
    expect(doneA.tests?.map((t) => t.name)).toEqual(['from-file']);
    const logB = (await world.queue.store.readLog(b.id)).join('\n');
    expect(logB).toContain(`.slipway.yml of commit ${shaB.slice(0, 12)} is ignored: apps.${fromConfig!.name}.steps in the configuration wins`);
    expect(logB).toContain('from-config | from the config');
    expect(logB).not.toContain('from-file');

    const bad = await commitWithFile(fromFile!.repo, `${fromFile!.name} v3`, 'steps:\n  - name: unit\n    command: [true]\n    privileged: true\n');
    const failed = await waitForJob(world.queue, (await deploy(world, fromFile!.name, bad)).id);
    expect(failed.state).toBe('failed');
    expect(failed.error).toBe(`.slipway.yml of commit ${bad.slice(0, 12)}: steps[0].privileged: unknown key (expected one of: name, command, image, env, timeout_s)`);
    expect(failed.steps.map((s) => s.step)).toEqual(['queued', 'checkout']);
    expect(await body(`${fromFile!.url}/`)).toBe(`${fromFile!.name} v2\n`);
  });

  it('cancelling during a long step removes its container within 2 s; the job is cancelled', async () => {
    world = await workerWorld({ app: { steps: [{ name: 'long', command: ['sh', '-c', 'echo started; sleep 300'] }] } });
    const [app] = world.apps;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const job = await deploy(world, app!.name, app!.repo.sha);
    for (let i = 0; i < 1200 && !(await world.queue.store.readLog(job.id)).includes('long | started'); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await containersOf(app!.name)).map((c) => c.Labels['slipway.step'])).toEqual(['long']);
    const cancelledAt = Date.now();
    await world.queue.cancel(job.id);
    while ((await containersOf(app!.name)).length > 0 && Date.now() - cancelledAt < 10_000) await new Promise((r) => setTimeout(r, 50));
    // Killed, not stopped within its 10 s grace, nor left to its sleep (removal alone may take seconds on a loaded machine).
    expect(Date.now() - cancelledAt).toBeLessThan(8000);
    const ended = await waitForJob(world.queue, job.id, 30_000);
    expect(ended.state).toBe('cancelled');
    expect(ended.tests).toEqual([expect.objectContaining({ name: 'long', outcome: 'cancelled' })]);
  });
});
