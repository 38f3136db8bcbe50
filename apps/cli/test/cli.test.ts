import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@slipway/core/logger';
import { loadConfig } from '@slipway/config/load-config';
import { AFTER_OUTPUT_LINE, commitVersion, createFixtureRepo, type FixtureRepo, freePort, git, isolatedNginx, startEtcd, startTcpRelay, stopProcess, tempDir, testAppName, testStack, uniqueName, waitFor, writeTestConfig } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectRedis } from '@slipway/queue/redis';
import { createDeployWorker, type DeployWorker } from '@slipway/worker/deploy-worker';

const CLI = fileURLToPath(new URL('../bin/slipway.js', import.meta.url));
const quiet = createLogger({ name: 'test', level: 'silent' });

interface Result { code: number; stdout: string; stderr: string }

/** runCommand only keeps the tail of failing output; this keeps both streams whole. */
function slipwayFull(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return run([process.execPath, CLI, ...args], { env });
}

function run(argv: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'], timeout: options.timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('slipway', () => {
  const tmp = tempDir();
  let nginx: Awaited<ReturnType<typeof isolatedNginx>>;
  let configFile: string;
  let app: string;
  let repo: FixtureRepo & { sha: string };
  let appUrl: string;
  let worker: DeployWorker;

  beforeAll(async () => {
    nginx = await isolatedNginx(tmp.path);
    app = testAppName();
    repo = await createFixtureRepo(tmp.path, { version: 'cli v1', name: app });
    const port = await freePort();
    appUrl = `http://127.0.0.1:${port}`;
    configFile = writeTestConfig(join(tmp.path, 'slipway.yml'), {
      stack: testStack(), nginx, prefix: uniqueName('cli'), workdir: join(tmp.path, 'work'),
      apps: { [app]: { repo: repo.url, replicas: 1, listen: `127.0.0.1:${port}`, drain_s: 1, stop_timeout_s: 2, health: { interval_ms: 100, timeout_s: 20 } } },
    });
    worker = createDeployWorker({ config: loadConfig({ path: configFile, env: {} }), logger: quiet });
  });
  afterAll(async () => {
    await worker.close(5000);
    await nginx.stop();
    tmp.remove();
  });

  const cfg = () => ['--config', configFile];

  it('shows usage and exits 2 for no command, an unknown command or a bad flag', async () => {
    const none = await slipwayFull(['--json']);
    expect(none.code).toBe(2);
    expect(none.stdout, 'a usage error is said on stderr, not printed as the answer').toBe('');
    expect(none.stderr).toContain('usage: slipway');
    const unknown = await slipwayFull([...cfg(), 'frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const badFlag = await slipwayFull([...cfg(), 'jobs', '--colour']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain('usage: slipway jobs');
    const badState = await slipwayFull([...cfg(), 'jobs', '--state', 'exploded']);
    expect(badState.code).toBe(2);
    expect((await slipwayFull([...cfg(), 'jobs', '--limit', '0'])).code).toBe(2);
    const huge = await slipwayFull([...cfg(), 'jobs', '--limit', '99999999999999999999']);
    expect(huge.code).toBe(2);
    expect(huge.stderr).toContain('--limit must be at most 10000');
    for (const args of [['retry'], ['retry', '--wait'], ['retry', '1', '--failed']]) {
      const retry = await slipwayFull([...cfg(), ...args]);
      expect(retry.code, `${args.join(' ')}: ${retry.stderr}`).toBe(2);
      expect(retry.stderr).toContain('give a job id or --failed');
    }
    // --json is global: before the command as after it.
    const before = await slipwayFull([...cfg(), '--json', 'jobs', '--limit', '1']);
    expect(before.code, before.stderr).toBe(0);
    expect(Array.isArray(JSON.parse(before.stdout))).toBe(true);
  });

  it('remote add replaces no hook of a repository\'s own, and refuses a directory that is not a repository (exit 2)', async () => {
    const notRepo = join(tmp.path, 'not-a-repo');
    mkdirSync(notRepo);
    writeFileSync(join(notRepo, 'notes.txt'), 'mine\n');
    const refusedDir = await slipwayFull([...cfg(), 'remote', 'add', app, notRepo]);
    expect(refusedDir.code).toBe(2);
    expect(refusedDir.stderr).toContain('is not a bare git repository');

    const aFile = join(tmp.path, 'a-file');
    writeFileSync(aFile, 'mine\n');
    const refusedFile = await slipwayFull([...cfg(), 'remote', 'add', app, aFile]);
    expect(refusedFile.code).toBe(2);
    expect(refusedFile.stderr).toContain(`${aFile} exists and is not a directory`);
    // A working repository's .git is left as it was, not turned bare under its work tree.
    const work = join(tmp.path, 'work-repo');
    await git(tmp.path, 'init', '-q', work);
    const refusedWork = await slipwayFull([...cfg(), 'remote', 'add', app, join(work, '.git')]);
    expect(refusedWork.code).toBe(2);
    expect(refusedWork.stderr).toContain('is a repository with a work tree, not a bare one');
    expect((await git(work, 'config', '--get', 'core.bare')).stdout.trim()).toBe('false');
    // A bare repository made without git's templates has no hooks/ directory: it is made.
    const bareNoHooks = join(tmp.path, 'no-hooks.git');
    await git(tmp.path, 'init', '-q', '--template=', '--bare', bareNoHooks);
    const added = await slipwayFull([...cfg(), '--json', 'remote', 'add', app, bareNoHooks]);
    expect(added.code, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toEqual({ app, repository: bareNoHooks, branch: 'master', hooks: [join(bareNoHooks, 'hooks', 'pre-receive'), join(bareNoHooks, 'hooks', 'reference-transaction')] });
    expect(readFileSync(join(bareNoHooks, 'hooks', 'pre-receive'), 'utf8')).toContain('runGitHook');
    // A Node that takes a file without an extension for CommonJS (before 20.19) runs the hooks too.
    const asCommonJs = spawnSync(process.execPath, ['--no-experimental-detect-module', join(bareNoHooks, 'hooks', 'reference-transaction'), 'committed'], { cwd: bareNoHooks, input: '', encoding: 'utf8', timeout: 20_000 });
    expect([asCommonJs.status, asCommonJs.stderr]).toEqual([0, '']);

    const mirror = join(tmp.path, 'mirror.git');
    await git(tmp.path, 'init', '-q', '--bare', mirror);
    const own = '#!/bin/sh\necho mirrored\n';
    writeFileSync(join(mirror, 'hooks', 'pre-receive'), own);
    const refusedHook = await slipwayFull([...cfg(), 'remote', 'add', app, mirror]);
    expect(refusedHook.code).toBe(2);
    expect(refusedHook.stderr).toContain(`${join(mirror, 'hooks', 'pre-receive')} is not a hook slipway installed`);
    expect(readFileSync(join(mirror, 'hooks', 'pre-receive'), 'utf8')).toBe(own);
    rmSync(join(mirror, 'hooks', 'pre-receive'));
    await git(mirror, 'config', 'core.hooksPath', '/srv/shared-hooks');
    const refusedPath = await slipwayFull([...cfg(), 'remote', 'add', app, mirror]);
    expect(refusedPath.code).toBe(2);
    expect(refusedPath.stderr).toContain('core.hooksPath "/srv/shared-hooks"');
    await git(mirror, 'config', '--unset', 'core.hooksPath');
    // Once they are out of the way, Slipway's hooks go in, and a second add brings them up to date.
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, mirror])).code).toBe(0);
    expect(readFileSync(join(mirror, 'hooks', 'pre-receive'), 'utf8')).toContain('runGitHook');
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, mirror])).code).toBe(0);

    // Another app of the same repository does not take the remote over: its pushes would deploy the wrong app.
    const two = join(tmp.path, 'two-apps.yml');
    const raw = JSON.parse(readFileSync(configFile, 'utf8')) as { apps: Record<string, unknown> };
    writeFileSync(two, JSON.stringify({ ...raw, apps: { ...raw.apps, [`${app}-b`]: raw.apps[app] } }));
    const refusedApp = await slipwayFull(['--config', two, 'remote', 'add', `${app}-b`, mirror]);
    expect(refusedApp.code).toBe(2);
    expect(refusedApp.stderr).toContain(`${mirror} deploys ${app} already`);
    expect(readFileSync(join(mirror, 'hooks', 'pre-receive'), 'utf8')).toContain(`app: ${JSON.stringify(app)}`);
  });

  it('exits 2 with one clear line on a bad config, never a stack trace', async () => {
    const bad = join(tmp.path, 'bad.yml');
    writeFileSync(bad, 'apps:\n  hello:\n    repo: /srv/hello.git\n    port: x\n');
    const result = await slipwayFull(['--config', bad, 'jobs']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe(`${bad}: apps.hello.port: expected a port 1-65535, got "x"`);
    const viaEnv = await slipwayFull(['jobs'], { SLIPWAY_CONFIG: bad });
    expect(viaEnv.code).toBe(2);
  });

  /** The test config's queue, for records seeded by hand (no worker takes them). */
  async function withQueue(fn: (queue: DeployQueue) => Promise<void>): Promise<void> {
    const config = loadConfig({ path: configFile, env: {} });
    const redis = connectRedis(config.redis, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    const queue = new DeployQueue({ redis, prefix: config.queue.prefix });
    try {
      await fn(queue);
    } finally {
      await queue.close();
      redis.disconnect();
    }
  }

  it('logs passes no escape or control sequence a build printed to the operator\'s terminal', async () => {
    await withQueue(async (queue) => {
      // A job record (no queue job: no worker takes it) that ended, its log as a hostile build left it.
      const job = await queue.store.create({ app: testAppName(), sha: null, ref: null, image: 'slipway/nothing:latest', trigger: 'cli' });
      await queue.store.appendLog(job.id, ['before\x1b]52;c;cm0gLXJmIH4=\x07after', '\x1b]0;owned\x07title', '\x1b[31mred\x1b[0m', 'wide\x1b[999999999G!', '\u009b2Jc1']);
      await queue.store.finish(job.id, 'failed', { error: 'hostile' });
      for (const follow of [[], ['--follow']]) {
        const shown = await slipwayFull([...cfg(), 'logs', job.id, ...follow]);
        expect(shown.stdout.split('\n').slice(0, 5), shown.stdout).toEqual(['beforeafter', 'title', 'red', 'wide!', 'c1']);
        expect(shown.stdout + shown.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f]/);
      }
    });
  });

  it('jobs says which deploys stopped the previous release with connections still open (drain_s ran out)', async () => {
    await withQueue(async (queue) => {
      const job = await queue.store.create({ app: testAppName(), sha: null, ref: null, image: 'slipway/nothing:latest', trigger: 'cli' });
      await queue.store.finish(job.id, 'completed', { result: { image: 'slipway/nothing:latest', release: job.id, drain: { ms: 5012, open: 2 } } });
      const table = (await slipwayFull([...cfg(), 'jobs', '--limit', '1'])).stdout.split('\n');
      expect(table[1]).toMatch(new RegExp(`^${job.id}\\s.*\\scompleted \\(2 cut\\)\\s`));
      expect(table.filter(Boolean).at(-1)).toMatch(/^\(N cut\): drain_s ran out with N connections to the previous release still open/);
      // The JSON contract keeps its fields and words.
      const [shown] = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--limit', '1'])).stdout);
      expect(shown).toMatchObject({ id: job.id, state: 'completed' });
      expect(Object.keys(shown)).toEqual(['id', 'app', 'sha', 'ref', 'trigger', 'state', 'attempts', 'createdAt', 'finishedAt', 'error']);
    });
  });

  it('exits 2 for an app the configuration lacks, 1 for a job id no job has (the operation failed)', async () => {
    const noApp = await slipwayFull([...cfg(), 'deploy', 'no-such-app']);
    expect(noApp.code).toBe(2);
    expect(noApp.stderr).toContain('unknown app "no-such-app"');
    for (const command of ['logs', 'cancel', 'retry']) {
      const missing = await slipwayFull([...cfg(), command, '987654']);
      expect(missing.code, command).toBe(1);
      expect(missing.stderr, command).toContain('no job "987654"');
    }
  });

  it('exits 1 with one line when Redis cannot be reached', async () => {
    const dead = join(tmp.path, 'dead.yml');
    writeFileSync(dead, JSON.stringify({ redis: 'redis://127.0.0.1:9', apps: {} }));
    const result = await slipwayFull(['--config', dead, 'jobs']);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('cannot reach Redis at redis://127.0.0.1:9');
  });

  it('a bad --ref, --image or --to is a usage error (2) even when Redis and etcd cannot be reached', async () => {
    const dead = join(tmp.path, 'dead-services.yml');
    writeFileSync(dead, JSON.stringify({ redis: 'redis://127.0.0.1:9', etcd: ['http://127.0.0.1:9'], apps: { web: { repo: '/srv/git/web.git' } } }));
    for (const [args, said] of [[['deploy', 'web', '--ref', 'a;b'], 'not a branch or commit'], [['deploy', 'web', '--image', 'Bad Image'], 'not an image reference'], [['rollback', 'web', '--to', 'zzz'], '--to must be 7 to 40']] as const) {
      const result = await slipwayFull(['--config', dead, ...args]);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toContain(said);
    }
  });

  it('says why Redis refused the connection: a wrong password is not "connection refused", and is not shown', async () => {
    const redis = new URL(testStack().redis!.url);
    const wrong = join(tmp.path, 'wrong-password.yml');
    writeFileSync(wrong, JSON.stringify({ redis: `redis://nobody:not-the-password@${redis.host}`, apps: {} }));
    const result = await slipwayFull(['--config', wrong, 'jobs']);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('WRONGPASS');
    expect(result.stderr).not.toContain('connection refused');
    expect(result.stderr).not.toContain('not-the-password');
  });

  it('jobs and logs give up with one line on a Redis that stops answering, rather than waiting for ever', async () => {
    const redis = new URL(testStack().redis!.url);
    // Connects and passes the ready check; from the commands' first read on, nothing is answered, the connection left open.
    const stalled = new WeakSet<object>();
    const relay = await startTcpRelay({ host: redis.hostname, port: Number(redis.port) }, {
      toServer: (chunk, c) => {
        if (/zrevrangebyscore|hgetall/i.test(chunk.toString('latin1'))) stalled.add(c);
        if (!stalled.has(c)) c.server.write(chunk);
      },
    });
    try {
      const file = join(tmp.path, 'stalled.yml');
      writeFileSync(file, JSON.stringify({ redis: `redis://127.0.0.1:${relay.port}`, queue: { prefix: uniqueName('stalled') }, apps: {} }));
      for (const command of [['jobs'], ['logs', '1']]) {
        const result = await run([process.execPath, CLI, '--config', file, ...command], { timeoutMs: 20_000 });
        expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(1);
        expect(result.stderr).toContain('Redis did not answer within');
      }
    } finally {
      relay.cut();
    }
  });

  it('cancel\'s wait for a running job to stop rides out Redis going away meanwhile', async () => {
    const redis = new URL(testStack().redis!.url);
    const connections = new Set<{ client: { destroy(): void }; server: { destroy(): void } }>();
    let downUntil = 0;
    const relay = await startTcpRelay({ host: redis.hostname, port: Number(redis.port) }, {
      toServer: (chunk, c) => {
        connections.add(c);
        if (Date.now() < downUntil) {
          c.client.destroy();
          c.server.destroy();
          return;
        }
        c.server.write(chunk);
      },
    });
    // A queue no worker takes from: its job, as if an attempt had started and it waits again, is asked to stop, and
    // the test ends it once Redis has been away and back.
    const prefix = uniqueName('blip');
    const direct = connectRedis(testStack().redis!.url, 'producer');
    const queue = new DeployQueue({ redis: direct, prefix });
    try {
      await new Promise((resolve) => direct.once('ready', resolve));
      const file = join(tmp.path, 'blip.yml');
      writeFileSync(file, JSON.stringify({ redis: `redis://127.0.0.1:${relay.port}`, queue: { prefix }, apps: {} }));
      {
        const job = await queue.enqueue({ app: testAppName(), sha: null, ref: null, image: 'slipway/nothing:latest', trigger: 'cli' });
        await queue.store.update(job.id, { startedAt: new Date().toISOString() });
        const cancelling = run([process.execPath, CLI, '--config', file, 'cancel', job.id], { timeoutMs: 60_000 });
        await waitFor('the cancel to be asked for', async () => (await queue.redis.exists(queue.store.keys.cancel(job.id))) === 1, { timeoutMs: 20_000 });
        // Redis goes away between two of its polls (its connection idle, closed under it) and comes back 1.5 s later.
        downUntil = Date.now() + 1500;
        for (const c of connections) {
          c.client.destroy();
          c.server.destroy();
        }
        await new Promise((resolve) => setTimeout(resolve, 2500));
        await queue.store.finish(job.id, 'cancelled', { error: 'cancelled by an operator' });
        const result = await cancelling;
        expect(result.code, result.stderr).toBe(0);
        expect(result.stdout).toContain(`job ${job.id} cancelled; nothing of it went live`);
      }
    } finally {
      await queue.close();
      direct.disconnect();
      relay.cut();
    }
  });

  it('jobs --json reaches a reader slower than the command whole (a pipe takes 64 KB, a socket pair some 200 KB; the rest waits for it)', async () => {
    const app = testAppName();
    await withQueue(async (queue) => {
      for (let i = 0; i < 2000; i++) await queue.store.create({ app, sha: null, ref: null, image: 'slipway/nothing:latest', trigger: 'cli' });
    });
    const child = spawn(process.execPath, [CLI, ...cfg(), 'jobs', '--limit', '2000', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const chunks: Buffer[] = [];
    const code = new Promise((resolve) => child.on('close', resolve));
    // Like `| less`: nothing is read for a while after the command has printed its answer (node reads what is left when the command exits).
    child.stdout.on('data', (c: Buffer) => chunks.push(c)).pause();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    child.stdout.resume();
    expect(await code, stderr).toBe(0);
    const text = Buffer.concat(chunks).toString();
    expect(text.length, 'more than a pipe or socket pair holds').toBeGreaterThan(300_000);
    expect((JSON.parse(text) as Array<{ app: string }>).filter((job) => job.app === app)).toHaveLength(2000);

    // A reader that goes away after its first page (`| head`, q in less): the command ends quietly, not with a stack.
    const quitter = spawn(process.execPath, [CLI, ...cfg(), 'jobs', '--limit', '2000', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let said = '';
    quitter.stderr.on('data', (c: Buffer) => (said += c));
    const ended = new Promise((resolve) => quitter.on('close', resolve));
    quitter.stdout.once('data', () => quitter.stdout.destroy());
    expect(await ended, said).toBe(0);
    expect(said).not.toMatch(/EPIPE|Unhandled|at /);
  });

  it('logs prints a long log whole, a page at a time', async () => {
    await withQueue(async (queue) => {
      const job = await queue.store.create({ app: testAppName(), sha: null, ref: null, image: 'slipway/nothing:latest', trigger: 'cli' });
      const lines = Array.from({ length: 12_345 }, (_, i) => `line ${i + 1} ${i % 1000 === 0 ? 'x'.repeat(16_000) : ''}`);
      for (let i = 0; i < lines.length; i += 5000) await queue.store.appendLog(job.id, lines.slice(i, i + 5000));
      await queue.store.finish(job.id, 'completed');
      const shown = await slipwayFull([...cfg(), 'logs', job.id]);
      expect(shown.code).toBe(0);
      expect(shown.stdout).toBe(`${lines.join('\n')}\n`);
      // --json: one document, the lines as an array; with --follow of a finished job, the same.
      for (const follow of [[], ['--follow']]) {
        const json = await slipwayFull([...cfg(), 'logs', job.id, '--json', ...follow]);
        expect(json.code, json.stderr).toBe(0);
        expect(JSON.parse(json.stdout)).toEqual(lines);
      }
      // Each line whole, whatever control characters a build printed (a C1 CSI, an ESC).
      const odd = await queue.store.create({ app: testAppName(), sha: null, ref: null, image: 'slipway/nothing:latest', trigger: 'cli' });
      const oddLines = ['plain', 'c1 \u009b31mred\u009b0m after', 'esc \u001b[1mbold', 'last'];
      await queue.store.appendLog(odd.id, oddLines);
      await queue.store.finish(odd.id, 'completed');
      const oddJson = await slipwayFull([...cfg(), 'logs', odd.id, '--json']);
      expect(JSON.parse(oddJson.stdout)).toEqual(oddLines);
    });
  });

  it('deploy --wait builds, rolls out and exits 0; jobs, logs and status show it', async () => {
    const result = await slipwayFull([...cfg(), 'deploy', app, '--wait']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/job (\d+) queued: deploy/);
    const id = /job (\d+) queued/.exec(result.stdout)![1]!;
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('cli v1\n');

    const jobs = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json'])).stdout);
    expect(jobs[0]).toEqual({
      id, app, sha: repo.sha, ref: 'master', trigger: 'cli', state: 'completed', attempts: 1,
      createdAt: expect.any(String), finishedAt: expect.any(String), error: null,
    });
    expect(Object.keys(jobs[0])).toEqual(['id', 'app', 'sha', 'ref', 'trigger', 'state', 'attempts', 'createdAt', 'finishedAt', 'error']);
    const table = (await slipwayFull([...cfg(), 'jobs', '--app', app])).stdout;
    expect(table.split('\n')[0]).toMatch(/^ID\s+APP\s+SHA\s+TRIGGER\s+STATE\s+DURATION\s+AGE$/);
    expect(table).toContain(repo.sha.slice(0, 12));

    const logs = await slipwayFull([...cfg(), 'logs', id]);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain('==> build');
    const follow = await slipwayFull([...cfg(), 'logs', id, '--follow']);
    expect(follow.code).toBe(0);
    expect(follow.stdout).toContain('==> rollout');

    const status = JSON.parse((await slipwayFull([...cfg(), 'status', app, '--json'])).stdout);
    expect(status).toHaveLength(1);
    expect(status[0]).toMatchObject({ app, release: { sha: repo.sha, job: id }, drift: [] });
    expect(status[0].containers).toHaveLength(1);
    expect(status[0].containers[0]).toMatchObject({ healthy: true });
    expect(status[0].upstreams).toHaveLength(1);
    expect(status[0].nginx.inSync).toBe(true);
    expect(status[0].containers[0].id).toMatch(/^[0-9a-f]{64}$/);
    // The table shows ids as `docker ps` does: 12 characters.
    const shown = (await slipwayFull([...cfg(), 'status', app])).stdout;
    expect(shown).toContain(`  ${status[0].containers[0].id.slice(0, 12)}  `);
    expect(shown).not.toContain(status[0].containers[0].id);
  });

  it('deploy --ref takes a short sha; rollback returns to the previous release without a rebuild', async () => {
    const sha2 = await commitVersion(repo, { version: 'cli v2' });
    const deployed = await slipwayFull([...cfg(), 'deploy', app, '--ref', sha2.slice(0, 9), '--wait']);
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('cli v2\n');
    expect((await slipwayFull([...cfg(), 'deploy', app, '--ref', 'no-such-branch'])).code).toBe(1);
    // A commit the app's branch does not reach is refused before anything is queued, whoever asks.
    const elsewhere = await commitVersion(repo, { version: 'cli elsewhere', branch: 'feature' });
    await git(repo.work, 'reset', '-q', '--hard', sha2);
    for (const ref of ['feature', elsewhere.slice(0, 10)]) {
      const refused = await slipwayFull([...cfg(), 'deploy', app, '--ref', ref]);
      expect(refused.code, ref).toBe(1);
      expect(refused.stderr).toContain(`commit ${elsewhere} is not on branch master`);
    }

    const back = await slipwayFull([...cfg(), 'rollback', app, '--wait']);
    expect(back.code, back.stderr).toBe(0);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('cli v1\n');
    const id = /job (\d+) queued/.exec(back.stdout)![1]!;
    const log = (await slipwayFull([...cfg(), 'logs', id])).stdout;
    expect(log).not.toContain('==> build');
    const jobs = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--limit', '1'])).stdout);
    expect(jobs[0]).toMatchObject({ id, trigger: 'rollback', sha: repo.sha, state: 'completed' });

    const to = await slipwayFull([...cfg(), 'rollback', app, '--to', sha2.slice(0, 12), '--wait', '--json']);
    expect(to.code, to.stderr).toBe(0);
    // --json with --wait: stdout is one JSON document, the job as it ended; what was queued is said on stderr.
    expect(JSON.parse(to.stdout)).toMatchObject({ trigger: 'rollback', sha: sha2, state: 'completed' });
    expect(to.stderr).toMatch(/job \d+ queued: roll/);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('cli v2\n');
    // What is live is nothing to roll back to: said, not rolled out again.
    const same = await slipwayFull([...cfg(), 'rollback', app, '--to', sha2.slice(0, 12)]);
    expect(same.code).toBe(1);
    expect(same.stderr).toContain(`commit ${sha2.slice(0, 12)} is what is live`);

    // A deploy of the app ahead of it in the queue is named: it goes live first, and the rollback over it.
    await withQueue(async (queue) => {
      const ahead = await queue.store.create({ app, sha: sha2, ref: null, image: null, trigger: 'cli' });
      try {
        const noted = await slipwayFull([...cfg(), 'rollback', app]);
        expect(noted.code, noted.stderr).toBe(0);
        expect(noted.stderr).toContain(`note: job ${ahead.id} (cli of ${sha2.slice(0, 12)}) is waiting before this rollback`);
        const id = /job (\d+) queued/.exec(noted.stdout)![1]!;
        await queue.store.finish(ahead.id, 'cancelled', { error: 'a test\'s record' });
        await waitFor(`rollback job ${id} to end`, async () => (await queue.store.get(id))?.finishedAt, { timeoutMs: 60_000 });
      } finally {
        await queue.store.finish(ahead.id, 'cancelled', { error: 'a test\'s record' });
      }
    });
  });

  it('a failed deploy exits 1 with --wait, and retry re-runs it keeping the history', async () => {
    const broken = await commitVersion(repo, { version: 'broken', variant: 'broken-build' });
    const failed = await slipwayFull([...cfg(), 'deploy', app, '--ref', broken, '--wait']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/failed: Step \d+\/\d+ : RUN/);
    const id = /job (\d+) queued/.exec(failed.stdout)![1]!;
    const retried = await slipwayFull([...cfg(), 'retry', id, '--wait', '--json']);
    expect(retried.code).toBe(1);
    expect(JSON.parse(retried.stdout)).toMatchObject([{ trigger: 'retry', state: 'failed' }]);
    const jobs = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--state', 'failed', '--app', app])).stdout);
    expect(jobs.map((j: { trigger: string }) => j.trigger)).toEqual(['retry', 'cli']);
  });

  it('cancel removes a waiting job', async () => {
    await worker.close(30_000);
    try {
      const queued = await slipwayFull([...cfg(), 'deploy', app]);
      const id = /job (\d+) queued/.exec(queued.stdout)![1]!;
      const cancelled = await slipwayFull([...cfg(), 'cancel', id]);
      expect(cancelled.code).toBe(0);
      expect(cancelled.stdout).toContain(`job ${id} cancelled`);
      const jobs = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--state', 'cancelled'])).stdout);
      expect(jobs[0].id).toBe(id);
      expect((await slipwayFull([...cfg(), 'cancel', id])).code).toBe(1);
      // --json: the job as it ends up, one document.
      const next = /job (\d+) queued/.exec((await slipwayFull([...cfg(), 'deploy', app])).stdout)![1]!;
      const asJson = await slipwayFull([...cfg(), 'cancel', next, '--json']);
      expect(asJson.code, asJson.stderr).toBe(0);
      expect(JSON.parse(asJson.stdout)).toMatchObject({ id: next, app, state: 'cancelled' });
    } finally {
      worker = createDeployWorker({ config: loadConfig({ path: configFile, env: {} }), logger: quiet });
    }
  });

  it('git push to a slipway remote deploys, streams the build, and is refused when the deploy fails', async () => {
    const remotePath = join(tmp.path, 'production.git');
    const added = await slipwayFull([...cfg(), 'remote', 'add', app, remotePath]);
    expect(added.code, added.stderr).toBe(0);
    await git(repo.work, 'remote', 'add', 'production', remotePath);
    // Built from the commit's files as a webhook's build would be: attributes meant for `git archive` change nothing.
    writeFileSync(join(repo.work, '.gitattributes'), 'www/index.html export-ignore\nrun.sh export-subst\n');
    await commitVersion(repo, { version: 'pushed v3' });
    const push = await run(['git', 'push', 'production', 'HEAD:refs/heads/master'], { cwd: repo.work });
    expect(push.code, push.stderr + push.stdout).toBe(0);
    const out = push.stderr + push.stdout;
    expect(out).toContain('remote: -----> Slipway: deploying');
    expect(out).toContain('remote: ==> build');
    expect(out).toContain('completed');
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('pushed v3\n');

    await commitVersion(repo, { version: 'pushed broken', variant: 'broken-build' });
    const refused = await run(['git', 'push', 'production', 'HEAD:refs/heads/master'], { cwd: repo.work });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('pre-receive hook declined');
    expect(refused.stderr).toContain('remote: error: asset pipeline failed');
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('pushed v3\n');
  });

  it('two pushes at once: the second is refused while the first deploys, and the branch ends on the commit left live', async () => {
    const remotePath = join(tmp.path, 'racing.git');
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, remotePath])).code).toBe(0);
    const first = await commitVersion(repo, { version: 'raced first' });
    const second = await commitVersion(repo, { version: 'raced second' });
    const branchHead = async () => (await git(remotePath, 'for-each-ref', '--format=%(objectname)', 'refs/heads/master')).stdout.trim();

    // Both pushes see the branch unborn: git's own ref lock is taken only after pre-receive, so both would pass it.
    const firstPush = run(['git', 'push', remotePath, `${first}:refs/heads/master`], { cwd: repo.work });
    await waitFor('the first push deploying', async () => {
      const [job] = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--app', app, '--limit', '1'])).stdout) as { state: string; sha: string }[];
      return job?.sha === first && job.state === 'active';
    }, { timeoutMs: 30_000, intervalMs: 100 });
    const secondPush = await run(['git', 'push', remotePath, `${second}:refs/heads/master`], { cwd: repo.work });
    const pushed = await firstPush;
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(secondPush.code, secondPush.stderr).not.toBe(0);
    expect(secondPush.stderr).toContain(`remote: slipway: another push is deploying ${app} at ${first.slice(0, 12)}`);
    expect(await branchHead()).toBe(first);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('raced first\n');
    expect(existsSync(join(remotePath, 'slipway-push.lock')), 'the lock goes once git moved the branch').toBe(false);

    // A lock left by a git process that is gone (killed between the hooks) is taken over.
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(join(remotePath, 'slipway-push.lock'), JSON.stringify({ pid: gone, ref: 'refs/heads/master', sha: first, since: new Date().toISOString() }));
    const again = await run(['git', 'push', remotePath, `${second}:refs/heads/master`], { cwd: repo.work });
    expect(again.code, again.stderr).toBe(0);
    expect(await branchHead()).toBe(second);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('raced second\n');

    // And one that cannot be read (empty: never written whole by Slipway, whose locks appear written).
    writeFileSync(join(remotePath, 'slipway-push.lock'), '');
    const third = await commitVersion(repo, { version: 'raced third' });
    const after = await run(['git', 'push', remotePath, `${third}:refs/heads/master`], { cwd: repo.work });
    expect(after.code, after.stderr).toBe(0);
    expect(await branchHead()).toBe(third);
  });

  it('a push whose branch moved since the pusher looked is refused before anything is queued', async () => {
    const remotePath = join(tmp.path, 'moved.git');
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, remotePath])).code).toBe(0);
    const head = await commitVersion(repo, { version: 'moved head' });
    const other = (await git(repo.work, 'rev-parse', 'HEAD~1')).stdout.trim();
    await git(remotePath, 'fetch', '-q', repo.work, 'HEAD:refs/heads/master');
    const newestJob = async () => (JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--app', app, '--limit', '1'])).stdout) as { id: string }[])[0]?.id;
    const jobBefore = await newestJob();
    // git's own view of the push: the branch at `other` when the pusher looked; it is at `head` now.
    const hook = spawnSync(join(remotePath, 'hooks', 'pre-receive'), [], { cwd: remotePath, env: { ...process.env, GIT_DIR: '.' }, input: `${other} ${other} refs/heads/master\n`, encoding: 'utf8', timeout: 20_000 });
    expect(hook.status).toBe(1);
    expect(hook.stderr).toContain(`slipway: master moved to ${head.slice(0, 12)} while this push was on its way; fetch and push again; push refused`);
    expect(await newestJob()).toBe(jobBefore);
    expect(existsSync(join(remotePath, 'slipway-push.lock'))).toBe(false);

    // While a push deploys (its git process alive: this one stands in), nothing else moves the branch.
    const lock = join(remotePath, 'slipway-push.lock');
    writeFileSync(lock, JSON.stringify({ pid: process.pid, ref: 'refs/heads/master', sha: head, since: new Date().toISOString() }));
    await expect(git(remotePath, 'update-ref', 'refs/heads/master', other)).rejects.toThrow(/being deployed at/);
    rmSync(lock);
    await git(remotePath, 'update-ref', 'refs/heads/master', other);
  });

  it('a push whose build prints megabytes at once deploys, and the pusher sees all of it', async () => {
    const remotePath = join(tmp.path, 'loud.git');
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, remotePath])).code).toBe(0);
    // 400 lines of 8 KB: 3.2 MB in a moment, far more than the hook's 1 MB of unread output in one poll of the log.
    const head = await commitVersion(repo, { version: 'loud build', variant: 'long-lines', lines: 400, lineBytes: 8000 });
    const push = await run(['git', 'push', remotePath, `${head}:refs/heads/master`], { cwd: repo.work });
    expect(push.code, push.stderr.slice(-2000)).toBe(0);
    expect(push.stderr).toContain(AFTER_OUTPUT_LINE);
    expect(push.stderr.split('\n').filter((l) => l.includes('a-a-a-a-')).length).toBeGreaterThanOrEqual(400);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('loud build\n');
  });

  it('a push deploys though the pusher\'s environment lacks the services\' secrets (webhook secret, dashboard token, another app\'s env)', async () => {
    const remotePath = join(tmp.path, 'no-secrets.git');
    const withSecrets = join(tmp.path, 'with-secrets.yml');
    const raw = JSON.parse(readFileSync(configFile, 'utf8')) as { apps: Record<string, Record<string, unknown>> };
    writeFileSync(withSecrets, JSON.stringify({
      ...raw,
      dashboard: { token: '${SLIPWAY_TEST_DASHBOARD_TOKEN}' },
      apps: { [app]: { ...raw.apps[app], secret: '${SLIPWAY_TEST_WEBHOOK_SECRET}' }, [`${app}-env`]: { repo: repo.url, env: { DATABASE_URL: '${SLIPWAY_TEST_DATABASE_URL}' } } },
    }));
    const services = { SLIPWAY_TEST_DASHBOARD_TOKEN: 't'.repeat(40), SLIPWAY_TEST_WEBHOOK_SECRET: 's'.repeat(40), SLIPWAY_TEST_DATABASE_URL: 'postgres://db/app' };
    const added = await slipwayFull(['--config', withSecrets, 'remote', 'add', app, remotePath], services);
    expect(added.code, added.stderr).toBe(0);
    const head = await commitVersion(repo, { version: 'no secrets' });
    const push = await run(['git', 'push', remotePath, `${head}:refs/heads/master`], { cwd: repo.work });
    expect(push.code, push.stderr).toBe(0);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('no secrets\n');
  });

  it('a push that cannot reach Redis is refused saying why: a wrong password is named, never shown', async () => {
    const remotePath = join(tmp.path, 'wrong-password.git');
    const wrong = join(tmp.path, 'push-wrong-password.yml');
    const redis = new URL(testStack().redis!.url);
    writeFileSync(wrong, JSON.stringify({ ...JSON.parse(readFileSync(configFile, 'utf8')), redis: `redis://nobody:not-the-password@${redis.host}` }));
    expect((await slipwayFull(['--config', wrong, 'remote', 'add', app, remotePath])).code).toBe(0);
    const head = await commitVersion(repo, { version: 'never queued' });
    const push = await run(['git', 'push', remotePath, `${head}:refs/heads/master`], { cwd: repo.work });
    expect(push.code).not.toBe(0);
    expect(push.stderr).toContain('cannot reach Redis');
    expect(push.stderr).toContain('WRONGPASS');
    expect(push.stderr).not.toContain('not-the-password');
    expect((await git(remotePath, 'for-each-ref', 'refs/heads/master')).stdout.trim()).toBe('');
  });

  it('a core.hooksPath in the server\'s git config does not bypass the remote: the push still deploys', async () => {
    const remotePath = join(tmp.path, 'hooks-path.git');
    const globalConfig = join(tmp.path, 'hooks-path.gitconfig');
    writeFileSync(globalConfig, `[core]\n\thooksPath = ${join(tmp.path, 'no-hooks-here')}\n`);
    const env = { ...process.env, GIT_CONFIG_GLOBAL: globalConfig };
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, remotePath])).code).toBe(0);
    const head = await commitVersion(repo, { version: 'hooks path' });
    const push = await run(['git', 'push', remotePath, `${head}:refs/heads/master`], { cwd: repo.work, env });
    expect(push.code, push.stderr).toBe(0);
    expect(push.stderr).toContain(`Slipway: deploying ${app} ${head.slice(0, 12)}`);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('hooks path\n');
  });

  it('an update hook (which git runs after the deploy) is refused: by remote add, and by a push before anything is queued', async () => {
    const remotePath = join(tmp.path, 'update-hook.git');
    await git(tmp.path, 'init', '-q', '--bare', remotePath);
    const update = join(remotePath, 'hooks', 'update');
    writeFileSync(update, '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const refused = await slipwayFull([...cfg(), 'remote', 'add', app, remotePath]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${update} is an update hook`);
    rmSync(update);
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, remotePath])).code).toBe(0);
    // Added afterwards: the push is refused before it deploys, not after.
    writeFileSync(update, '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const newestJob = async () => (JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--app', app, '--limit', '1'])).stdout) as { id: string }[])[0]?.id;
    const jobBefore = await newestJob();
    const head = await commitVersion(repo, { version: 'behind an update hook' });
    const push = await run(['git', 'push', remotePath, `${head}:refs/heads/master`], { cwd: repo.work });
    expect(push.code).not.toBe(0);
    expect(push.stderr).toContain('is an update hook: git runs it after the deploy');
    expect(push.stderr).not.toContain('Slipway: deploying');
    expect(await newestJob(), 'nothing was queued').toBe(jobBefore);
  });

  it('a tag or a tree pushed to the branch is refused before anything is queued, and what is live stays', async () => {
    const remotePath = join(tmp.path, 'tagged.git');
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, remotePath])).code).toBe(0);
    const head = await commitVersion(repo, { version: 'tagged head' });
    await git(repo.work, 'tag', '-a', '-m', 'release', 'tagged-v1', head);
    const newestJob = async () => (JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--app', app, '--limit', '1'])).stdout) as { id: string }[])[0]?.id;
    const jobBefore = await newestJob();
    const live = await fetch(`${appUrl}/`).then((r) => r.text());

    const tag = await run(['git', 'push', remotePath, 'tagged-v1:refs/heads/master'], { cwd: repo.work });
    expect(tag.code, tag.stderr).not.toBe(0);
    expect(tag.stderr).toMatch(/slipway: [0-9a-f]{12} is a tag, not a commit; only a commit deploys .* push refused/);
    const tree = await run(['git', 'push', remotePath, `${head}^{tree}:refs/heads/master`], { cwd: repo.work });
    expect(tree.code, tree.stderr).not.toBe(0);
    expect(tree.stderr).toContain('is a tree, not a commit');
    expect(await newestJob(), 'nothing was queued').toBe(jobBefore);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe(live);
    expect((await git(remotePath, 'for-each-ref', 'refs/heads/master')).stdout.trim()).toBe('');
    expect(existsSync(join(remotePath, 'slipway-push.lock'))).toBe(false);

    // The commit the tag names deploys as any other.
    const pushed = await run(['git', 'push', remotePath, 'tagged-v1^{commit}:refs/heads/master'], { cwd: repo.work });
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('tagged head\n');
  });

  it('a repository that refuses non-fast-forward pushes refuses a forced one before it deploys, not after', async () => {
    const remotePath = join(tmp.path, 'fast-forward-only.git');
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, remotePath])).code).toBe(0);
    await git(remotePath, 'config', 'receive.denyNonFastForwards', 'true');
    const head = await commitVersion(repo, { version: 'fast-forward head' });
    expect((await run(['git', 'push', remotePath, `${head}:refs/heads/master`], { cwd: repo.work })).code).toBe(0);
    const [job] = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--app', app, '--limit', '1'])).stdout) as { id: string }[];
    const forced = await run(['git', 'push', '--force', remotePath, `${head}~1:refs/heads/master`], { cwd: repo.work });
    expect(forced.code).not.toBe(0);
    expect(forced.stderr).toContain('refuses non-fast-forward pushes (receive.denyNonFastForwards); push refused');
    const [newest] = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--app', app, '--limit', '1'])).stdout) as { id: string }[];
    expect(newest!.id, 'nothing was queued').toBe(job!.id);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('fast-forward head\n');
  });

  it('a pusher who goes away mid-deploy: the deploy is cancelled at its next safe point and git is answered by its outcome', async () => {
    const remotePath = join(tmp.path, 'dropped.git');
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, remotePath])).code).toBe(0);
    const served = () => fetch(`${appUrl}/`).then((r) => r.text(), () => 'nothing');
    const live = await served();
    const sha = await commitVersion(repo, { version: 'pusher gone' });
    await git(remotePath, 'fetch', '-q', repo.work, 'HEAD:refs/incoming/dropped');
    // git runs the hook with its output going to the pusher; the pusher gives up once the deploy started.
    const hook = spawn(join(remotePath, 'hooks', 'pre-receive'), [], { cwd: remotePath, env: { ...process.env, GIT_DIR: '.' }, stdio: ['pipe', 'pipe', 'pipe'] });
    hook.stdin.end(`${'0'.repeat(40)} ${sha} refs/heads/master\n`);
    const exited = new Promise<number | null>((resolve) => hook.on('close', resolve));
    let seen = '';
    await new Promise<void>((resolve) => hook.stdout.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('-----> Slipway: deploying')) resolve();
    }));
    // A local push's Ctrl-C: SIGINT to the whole process group, the hook included.
    hook.kill('SIGINT');
    const code = await exited;
    const [job] = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--app', app, '--limit', '1'])).stdout) as { sha: string; state: string }[];
    expect(job?.sha).toBe(sha);
    // Whichever came first, the cancel or the cutover, git is told what is live: the branch moves only onto it.
    if (job?.state === 'completed') {
      expect(code).toBe(0);
      expect(await served()).toBe('pusher gone\n');
      rmSync(join(remotePath, 'slipway-push.lock'));
    } else {
      expect(job?.state).toBe('cancelled');
      expect(code).toBe(1);
      expect(await served()).toBe(live);
      expect(existsSync(join(remotePath, 'slipway-push.lock'))).toBe(false);
    }
  });

  /**
   * A push to a fresh remote of `sha` while no worker runs, `meanwhile` queuing another job of the app
   * (its id returned); then the worker again. Resolves with the hook's exit code, stderr and that job's id.
   */
  async function pushWhileAnotherIsQueued(remote: string, sha: string, meanwhile: () => Promise<string>) {
    const remotePath = join(tmp.path, remote);
    expect((await slipwayFull([...cfg(), 'remote', 'add', app, remotePath])).code).toBe(0);
    await git(remotePath, 'fetch', '-q', repo.work, `${sha}:refs/incoming/${remote}`);
    await worker.close(30_000);
    let hook: ReturnType<typeof spawn> | undefined;
    let restarted = false;
    try {
      hook = spawn(join(remotePath, 'hooks', 'pre-receive'), [], { cwd: remotePath, env: { ...process.env, GIT_DIR: '.' }, stdio: ['pipe', 'pipe', 'pipe'] });
      hook.stdin!.end(`${'0'.repeat(40)} ${sha} refs/heads/master\n`);
      const exited = new Promise<number | null>((resolve) => hook!.on('close', resolve));
      let stdout = '';
      let stderr = '';
      hook.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      await new Promise<void>((resolve) => hook!.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('-----> Slipway: deploying')) resolve();
      }));
      const other = await meanwhile();
      worker = createDeployWorker({ config: loadConfig({ path: configFile, env: {} }), logger: quiet });
      restarted = true;
      return { code: await exited, stdout, stderr, other, lockLeft: existsSync(join(remotePath, 'slipway-push.lock')) };
    } finally {
      hook?.kill();
      if (!restarted) worker = createDeployWorker({ config: loadConfig({ path: configFile, env: {} }), logger: quiet });
    }
  }

  const queuedDeploy = async (ref: string) => {
    const deploy = await slipwayFull([...cfg(), 'deploy', app, '--ref', ref]);
    expect(deploy.code, deploy.stderr).toBe(0);
    return /job (\d+) queued/.exec(deploy.stdout)![1]!;
  };

  it('a push whose deploy is replaced while it waits (a deploy of another commit queued after it) is refused', async () => {
    const older = await commitVersion(repo, { version: 'replaced: the deploy' });
    const sha = await commitVersion(repo, { version: 'replaced: the push' });
    const pushed = await pushWhileAnotherIsQueued('replaced.git', sha, () => queuedDeploy(older));
    expect(pushed.code).toBe(1);
    expect(pushed.stderr).toContain(`-----> Slipway: job ${pushed.other} of ${app}, queued while this push waited, replaced its deploy; push refused`);
    expect(pushed.lockLeft).toBe(false);
    await waitFor('the deploy that replaced the push', async () => {
      const [job] = JSON.parse((await slipwayFull([...cfg(), 'jobs', '--json', '--app', app, '--limit', '1'])).stdout) as { id: string; state: string }[];
      return job?.id === pushed.other && job.state === 'completed';
    }, { timeoutMs: 120_000, intervalMs: 250 });
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('replaced: the deploy\n');
  });

  it('a push whose deploy is replaced by a job of the same commit (its webhook, a deploy of it) is answered by that job\'s outcome', async () => {
    const sha = await commitVersion(repo, { version: 'replaced by itself' });
    const pushed = await pushWhileAnotherIsQueued('same-commit.git', sha, () => queuedDeploy(sha));
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toContain(`-----> Slipway: job ${pushed.other} deploys this commit too; following it`);
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('replaced by itself\n');
    rmSync(join(tmp.path, 'same-commit.git', 'slipway-push.lock'), { force: true });
  });

  it('a push to a remote whose Redis is unreachable is refused without showing the pusher Redis\'s password', async () => {
    const remotePath = join(tmp.path, 'unreachable.git');
    const secretConfig = join(tmp.path, 'unreachable.yml');
    writeFileSync(secretConfig, JSON.stringify({ redis: 'redis://:hunter2-redis-password@127.0.0.1:9', apps: { [app]: { repo: repo.url } } }));
    expect((await slipwayFull(['--config', secretConfig, 'remote', 'add', app, remotePath])).code).toBe(0);
    await git(repo.work, 'remote', 'add', 'unreachable', remotePath);
    const push = await run(['git', 'push', 'unreachable', 'HEAD:refs/heads/master'], { cwd: repo.work });
    expect(push.code).not.toBe(0);
    expect(push.stderr).toContain('remote: slipway: cannot reach Redis at redis://***@127.0.0.1:9 (no answer within 5000 ms: connect ECONNREFUSED 127.0.0.1:9); push refused');
    expect(push.stderr).not.toContain('hunter2');
  });
});

describe('slipway retry after etcd was down', () => {
  it('a job that failed because etcd was unreachable completes when retried after etcd is back', async () => {
    const tmp = tempDir();
    const nginx = await isolatedNginx(tmp.path);
    let etcd = await startEtcd(join(tmp.path, 'etcd'), await freePort(), await freePort());
    const app = testAppName();
    const repo = await createFixtureRepo(tmp.path, { version: 'etcd v1', name: app });
    const port = await freePort();
    const configFile = writeTestConfig(join(tmp.path, 'slipway.yml'), {
      stack: testStack(), nginx, prefix: uniqueName('cli'), workdir: join(tmp.path, 'work'),
      apps: { [app]: { repo: repo.url, replicas: 1, listen: `127.0.0.1:${port}`, drain_s: 1, health: { interval_ms: 100 } } },
      extra: { etcd: [etcd.url], worker: { attempts: 1, backoff_ms: 100 } },
    });
    const worker = createDeployWorker({ config: loadConfig({ path: configFile, env: {} }), logger: quiet });
    try {
      await stopProcess(etcd.pid);
      const failed = await slipwayFull(['--config', configFile, 'deploy', app, '--wait']);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toMatch(/etcd/i);
      const id = /job (\d+) queued/.exec(failed.stdout)![1]!;

      etcd = await startEtcd(join(tmp.path, 'etcd'), etcd.port, etcd.peerPort);
      const retried = await slipwayFull(['--config', configFile, 'retry', id, '--wait']);
      expect(retried.code, retried.stderr + retried.stdout + (await slipwayFull(['--config', configFile, 'logs', '2'])).stdout).toBe(0);
      expect(await fetch(`http://127.0.0.1:${port}/`).then((r) => r.text())).toBe('etcd v1\n');
    } finally {
      await worker.close(5000);
      await stopProcess(etcd.pid);
      await nginx.stop();
      tmp.remove();
    }
  });
});
