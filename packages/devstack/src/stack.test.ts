import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import Docker from 'dockerode';
import { pack } from 'tar-fs';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { processStart, runCommand } from '@slipway/core/run-command';
import { BASE_IMAGE } from './base-image.js';
import { createFixtureRepo } from './fixture-app.js';
import { freePort, isAlive, processesUnder, stopProcess, waitFor } from './processes.js';
import { startNginx } from './services.js';
import { ALL_SERVICES, assertStackFree, frontSocketDir, liveStacks, orphanedStackIds, readStack, removeOrphanTestArtifacts, StackInUseError, stackEnv, startStack, stopStack, sweepStaleStacks } from './stack.js';
import { tempDir, testAppName } from './testing.js';

const docker = new Docker();

describe('a stack', () => {
  const scratch = tempDir();
  afterAll(() => scratch.remove());

  it('starts once, is reused by a second start, and stops leaving nothing running', async () => {
    const dir = join(scratch.path, 'stack');
    const first = await startStack({ dir, services: ['redis', 'etcd', 'nginx'], install: false });
    const second = await startStack({ dir, services: ['redis', 'etcd', 'nginx'], install: false });
    expect(second.redis).toEqual(first.redis);
    expect(second.etcd).toEqual(first.etcd);
    expect(second.nginx).toEqual(first.nginx);
    const pids = [first.redis!.pid, first.etcd!.pid, first.nginx!.pid];
    expect(pids.every(isAlive)).toBe(true);

    await stopProcess(first.redis!.pid);
    const third = await startStack({ dir, services: ['redis', 'etcd', 'nginx'], install: false });
    expect(third.redis!.pid).not.toBe(first.redis!.pid);
    expect(third.redis!.port).toBe(first.redis!.port);

    // Its port taken meanwhile by another process (one that even answers PING): the restarted Redis gets a port of its own.
    await stopProcess(third.redis!.pid);
    const other = createServer((socket) => socket.on('data', () => socket.write('+PONG\r\n')));
    await new Promise<void>((resolve) => other.listen(third.redis!.port, '127.0.0.1', resolve));
    try {
      const fourth = await startStack({ dir, services: ['redis', 'etcd', 'nginx'], install: false });
      expect(fourth.redis!.port).not.toBe(third.redis!.port);
      expect(isAlive(fourth.redis!.pid)).toBe(true);
      third.redis = fourth.redis;
    } finally {
      other.close();
    }

    await stopStack(third);
    expect([third.redis!.pid, third.etcd!.pid, third.nginx!.pid].some(isAlive)).toBe(false);
  });

  it('does not take, as the dockerd it started, a process that has its recorded pid now (after a reboot): that one is never stopped', async () => {
    const dir = join(scratch.path, 'rebooted');
    const first = await startStack({ dir, services: [], install: false });
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    onTestFinished(() => void other.kill('SIGKILL'));
    await new Promise((resolve) => other.once('spawn', resolve));
    // The stack.json a run left before the reboot: its dockerd's pid is another process's now.
    writeFileSync(join(dir, 'stack.json'), JSON.stringify({ ...first, ownerPid: 1, docker: { pid: other.pid, start: '1', host: 'unix:///var/run/docker.sock' } }));
    const again = await startStack({ dir, services: ['docker'], install: false });
    try {
      expect(again.docker).toEqual({ host: 'unix:///var/run/docker.sock' });
    } finally {
      await stopStack(again);
    }
    expect(isAlive(other.pid)).toBe(true);
  });

  it('announces a named stack (npm start\'s) to the others while it runs, so that a test run\'s end leaves the dockerd it reuses', async () => {
    const dir = join(scratch.path, 'named');
    const state = await startStack({ dir, services: [], install: false });
    expect(liveStacks().map((s) => s.dir)).toContain(dir);
    await stopStack(state);
    expect(liveStacks().map((s) => s.dir)).not.toContain(dir);
    expect(readdirSync(tmpdir()).filter((name) => name.endsWith(state.id))).toEqual([]);
    // Its owner killed: not live, and its link goes.
    const killed = await startStack({ dir, services: [], install: false });
    writeFileSync(join(dir, 'stack.json'), JSON.stringify({ ...killed, ownerPid: 2 ** 22 + 1 }));
    expect(liveStacks().map((s) => s.dir)).not.toContain(dir);
    expect(readdirSync(tmpdir()).filter((name) => name.endsWith(killed.id))).toEqual([]);
    // Its directory removed while its owner ran (a test run's scratch directory): its link goes too.
    const removed = await startStack({ dir, services: [], install: false });
    rmSync(dir, { recursive: true, force: true });
    expect(liveStacks().map((s) => s.dir)).not.toContain(dir);
    expect(readdirSync(tmpdir()).filter((name) => name.endsWith(removed.id))).toEqual([]);
  });

  it('is neither taken over nor stopped (start, stop --dir) while another running process owns it; a reused pid owns nothing', async () => {
    const dir = join(scratch.path, 'owned');
    const state = await startStack({ dir, services: [], install: false });
    // Another process owns it, as npm start's devstack owns .slipway/stack while it runs.
    const owner = spawn('sleep', ['60'], { stdio: 'ignore' });
    onTestFinished(() => {
      owner.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
    try {
      await waitFor('the owner started', async () => processStart(owner.pid!) !== null);
      const owned = { ...state, ownerPid: owner.pid!, ownerStart: processStart(owner.pid!)! };
      writeFileSync(join(dir, 'stack.json'), JSON.stringify(owned));
      expect(() => assertStackFree(dir)).toThrow(StackInUseError);
      await expect(startStack({ dir, services: [], install: false })).rejects.toThrow(/belongs to process \d+, which is running/);
      expect(readStack(dir)).toEqual(owned);
      expect(liveStacks().map((s) => s.dir)).toContain(dir);
      // The same pid with another start time is a process that reused it: the owner is gone.
      writeFileSync(join(dir, 'stack.json'), JSON.stringify({ ...owned, ownerStart: '1' }));
      expect(liveStacks().map((s) => s.dir)).not.toContain(dir);
      expect(() => assertStackFree(dir)).not.toThrow();
    } finally {
      owner.kill('SIGKILL');
    }
    await stopStack(await startStack({ dir, services: [], install: false }));
  });

  it('stops what it started when a later part fails, and leaves no state naming it', async () => {
    const dir = join(scratch.path, 'failing');
    // nginx's prefix directory cannot be made where a file is: nginx fails after Redis and etcd are up.
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'nginx'), 'not a directory\n');
    await expect(startStack({ dir, services: ['redis', 'etcd', 'nginx'], install: false })).rejects.toThrow(/nginx/);
    expect(processesUnder(dir)).toEqual([]);
    expect(readStack(dir)).toBeNull();
  });

  it('removes the test containers of a stack the sweep stopped while Docker did not answer, however young, once an engine answers', async () => {
    const id = randomBytes(3).toString('hex');
    const dir = join(tmpdir(), `slipway-stack-${id}`);
    mkdirSync(dir);
    // A run killed with its dockerd: its state names no engine that answers, its app's container is a minute old.
    const dead = spawnSync('true').pid!;
    writeFileSync(join(dir, 'stack.json'), JSON.stringify({ id, dir, ownerPid: dead, temporary: true }));
    const container = await docker.createContainer({ Image: BASE_IMAGE, Cmd: ['true'], Labels: { 'slipway.app': `t${id}-app` } });
    try {
      await sweepStaleStacks();
      expect(readStack(dir)).toBeNull();
      await removeOrphanTestArtifacts('ffffff');
      await expect(container.inspect()).rejects.toMatchObject({ statusCode: 404 });
    } finally {
      await container.remove({ force: true }).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes for a killed run\'s only the test containers of an id no live stack has, all of them old', () => {
    const now = Date.parse('2026-12-04T12:00:00Z');
    const at = (minutesAgo: number) => (now - minutesAgo * 60_000) / 1000;
    const c = (app: string, minutesAgo: number) => ({ Labels: { 'slipway.app': app }, Created: at(minutesAgo) });
    expect(orphanedStackIds([
      c('t0dead0-a', 90), c('t0dead0-b', 45), // killed an hour ago: all old
      c('tbeef01-a', 90), c('tbeef01-b', 2), // a long run that leaked one early: its newest is young
      c('tc0ffee-a', 90), // old, but its stack is live
      c('hello', 90), c('t12345-short', 90), // not test apps of a stack
    ], new Set(['c0ffee']), now)).toEqual(['0dead0']);
  });

  it('starts a front nginx when asked for (`front`); a back killed with its app sockets still starts again', async () => {
    const dir = join(scratch.path, 'two-tiers');
    const first = await startStack({ dir, services: ['nginx', 'front'], install: false });
    expect(first.front!.socketDir).toBe(frontSocketDir(dir));
    expect(first.front!.confDir).not.toBe(first.nginx!.confDir);
    // The back listens for an app on a socket, as Slipway writes it with nginx.front.
    const socket = join(first.front!.socketDir, 'slipway-app.sock');
    writeFileSync(join(first.nginx!.confDir, 'app.conf'), `server { listen unix:${socket}; return 200 "back\\n"; }\n`);
    await runCommand(first.nginx!.reloadCmd);
    await waitFor('the back on its socket', async () => lstatSync(socket, { throwIfNoEntry: false })?.isSocket() === true);

    // Killed, not stopped (its master and workers: their process group): the socket file stays, and nginx could not bind it again.
    const workers = readFileSync(`/proc/${first.nginx!.pid}/task/${first.nginx!.pid}/children`, 'utf8').trim().split(' ').map(Number);
    process.kill(-first.nginx!.pid, 'SIGKILL');
    await waitFor('the back gone', async () => ![first.nginx!.pid, ...workers].some(isAlive));
    expect(lstatSync(socket).isSocket()).toBe(true);
    const second = await startStack({ dir, services: ['nginx', 'front'], install: false });
    expect(second.front).toEqual(first.front);
    expect(second.nginx!.pid).not.toBe(first.nginx!.pid);
    const answer = await new Promise<string>((resolve, reject) => {
      get({ socketPath: socket, path: '/' }, (res) => {
        res.setEncoding('utf8');
        let body = '';
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    expect(answer).toBe('back\n');

    await stopStack(second);
    expect([second.nginx!.pid, second.front!.pid].some(isAlive)).toBe(false);
  });

  it('starts dnsmasq only when asked for (`dns`), answering from its hosts directory; reuses it; stops it', async () => {
    expect(ALL_SERVICES).not.toContain('dns');
    const dir = join(scratch.path, 'dns-stack');
    const first = await startStack({ dir, services: ['dns'], install: false });
    expect(first.dns).toMatchObject({ server: `127.0.0.1:${first.dns!.port}`, domain: 'slipway.internal' });
    expect(stackEnv(first)).toMatchObject({ SLIPWAY_STACK_DNS: first.dns!.server, SLIPWAY_STACK_DNS_HOSTS: first.dns!.hostsDir });
    writeFileSync(join(first.dns!.hostsDir, '.demo.tmp'), '127.0.10.9 demo.slipway.internal\n');
    renameSync(join(first.dns!.hostsDir, '.demo.tmp'), join(first.dns!.hostsDir, 'demo'));
    const resolver = new Resolver({ timeout: 500, tries: 1 });
    resolver.setServers([first.dns!.server]);
    let answer: string[] = [];
    for (let i = 0; i < 50 && answer.length === 0; i++) {
      answer = await resolver.resolve4('demo.slipway.internal').catch(() => []);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(answer).toEqual(['127.0.10.9']);
    const second = await startStack({ dir, services: ['dns'], install: false });
    expect(second.dns).toEqual(first.dns);
    await stopStack(second);
    expect(isAlive(first.dns!.pid)).toBe(false);
  });

  // As root, under a home only root may enter (/root/slipway/.slipway/stack): nginx's workers, `nobody` by default,
  // could not write a large body's temp file there (500), nor reach a back's unix sockets.
  it.runIf(process.getuid?.() === 0)('an nginx of its own takes a body larger than its buffers under a directory only its user may enter', async () => {
    const home = join(scratch.path, 'private-home');
    mkdirSync(home, { mode: 0o700 });
    chmodSync(home, 0o700);
    const statusPort = await freePort();
    const listen = await freePort();
    mkdirSync(join(home, 'nginx', 'conf.d'), { recursive: true });
    writeFileSync(join(home, 'nginx', 'conf.d', 'upload.conf'), `server { listen 127.0.0.1:${listen}; client_body_buffer_size 1k; location = /upload { proxy_pass http://127.0.0.1:${statusPort}/__devstack; } }\n`);
    const nginx = await startNginx(join(home, 'nginx'), statusPort);
    try {
      const answer = await fetch(`http://127.0.0.1:${listen}/upload`, { method: 'POST', body: 'x'.repeat(64 * 1024) });
      expect(answer.status, await answer.text()).toBe(200);
    } finally {
      await stopProcess(nginx.pid);
    }
  });

  it('builds the sample app on the imported base image and serves it through an nginx of its own', async () => {
    const app = testAppName();
    const repo = await createFixtureRepo(scratch.path, { version: 'v-fixture', name: app });
    const image = `slipway/${app}:test`;
    const stream = await docker.buildImage(pack(repo.work) as unknown as NodeJS.ReadableStream, { t: image, pull: false } as Docker.ImageBuildOptions);
    await new Promise((resolve, reject) => docker.modem.followProgress(stream, (err, out) => (err ? reject(err) : resolve(out))));
    expect((await docker.getImage(image).inspect()).Config.Cmd).toEqual(['/run.sh']);
    expect((await docker.getImage(BASE_IMAGE).inspect()).Size).toBeLessThan(5_000_000);

    const container = await docker.createContainer({
      Image: image,
      Labels: { 'slipway.app': app },
      HostConfig: { PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
    });
    try {
      await container.start();
      const hostPort = (await container.inspect()).NetworkSettings.Ports['8080/tcp']![0]!.HostPort;
      const nginx = await startNginx(join(scratch.path, 'nginx'), await freePort());
      try {
        const listen = await freePort();
        writeFileSync(join(nginx.confDir, 'fixture.conf'), `server { listen 127.0.0.1:${listen}; location / { proxy_pass http://127.0.0.1:${hostPort}; } }\n`);
        await runCommand(nginx.checkCmd);
        await runCommand(nginx.reloadCmd);
        let body = '';
        for (let i = 0; i < 50 && body !== 'v-fixture\n'; i++) {
          body = await fetch(`http://127.0.0.1:${listen}/`).then((r) => r.text()).catch(() => '');
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(body).toBe('v-fixture\n');
        expect((await fetch(`http://127.0.0.1:${listen}/healthz`)).status).toBe(200);
        const started = Date.now();
        expect(await fetch(`http://127.0.0.1:${listen}/cgi-bin/slow`).then((r) => r.text())).toBe('v-fixture\n');
        expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      } finally {
        await stopProcess(nginx.pid);
      }
    } finally {
      await container.remove({ force: true });
      await docker.getImage(image).remove({ force: true });
    }
  });
});
