import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import Docker from 'dockerode';
import { pack } from 'tar-fs';
import { afterAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { BASE_IMAGE } from './base-image.js';
import { createFixtureRepo } from './fixture-app.js';
import { freePort, isAlive, stopProcess } from './processes.js';
import { startNginx } from './services.js';
import { ALL_SERVICES, stackEnv, startStack, stopStack } from './stack.js';
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

    await stopStack(third);
    expect([third.redis!.pid, third.etcd!.pid, third.nginx!.pid].some(isAlive)).toBe(false);
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
