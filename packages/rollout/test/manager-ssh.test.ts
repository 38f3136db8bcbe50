import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { dockerError } from '@slipway/core/docker';
import { BASE_IMAGE, freePort, startProcess, tempDir, waitFor, type RunningProcess } from '@slipway/devstack/testing';
import { managerClient } from '../src/swarm/swarm-service.js';
import { docker } from './fixtures.js';

/*
 * engine.manager: ssh://. An sshd of the test's own on loopback, which lets
 * this machine's root in with a key of the test's own; behind it, `docker
 * system dial-stdio` reaches this machine's engine, so the manager over ssh
 * must answer as the engine does directly.
 */
describe('a manager behind ssh://', () => {
  const dir = tempDir('slipway-ssh-');
  const file = (name: string) => join(dir.path, name);
  let sshd: RunningProcess;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    for (const key of ['host', 'client']) await runCommand(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `slipway-test-${key}`, '-f', file(key)]);
    writeFileSync(file('authorized_keys'), readFileSync(file('client.pub')));
    writeFileSync(file('known_hosts'), `[127.0.0.1]:${port} ${readFileSync(file('host.pub'), 'utf8')}`);
    writeFileSync(file('sshd_config'), [
      `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${file('host')}`, `AuthorizedKeysFile ${file('authorized_keys')}`,
      `PidFile ${file('sshd.pid')}`, 'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
      // The test's files are under /tmp, which StrictModes refuses; UsePAM would want a login session set up.
      'StrictModes no', 'UsePAM no', 'LogLevel ERROR', '',
    ].join('\n'));
    // sshd's privilege separation directory, which Debian's service would make.
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    sshd = startProcess(['/usr/sbin/sshd', '-D', '-e', '-f', file('sshd_config')]);
    await waitFor(`sshd on ${port}`, () => new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      }).on('error', () => resolve(false));
    }), { timeoutMs: 10_000 });
  });
  afterAll(async () => {
    await sshd?.stop();
    dir.remove();
  });

  /** Ends this process's ssh pipes as a restarting sshd or dockerd would; their pids. */
  const endPipes = () => {
    const pipes = readdirSync('/proc').filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        const ppid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
        return ppid === process.pid && argv.includes('dial-stdio');
      } catch {
        return false;
      }
    });
    expect(pipes.length).toBeGreaterThan(0);
    for (const pid of pipes) process.kill(Number(pid), 'SIGTERM');
    return pipes;
  };
  const ended = (pid: string) => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z');
    } catch {
      return true;
    }
  };

  const manager = (knownHosts = file('known_hosts')) => managerClient({
    type: 'swarm', manager: `ssh://root@127.0.0.1:${port}`, ssh: { key: file('client'), known_hosts: knownHosts },
  });

  it('answers as the engine itself: its identity, many calls at once on pooled pipes, an image streamed out and back in', async () => {
    const remote = manager();
    expect(String(await remote.ping())).toBe('OK');
    expect((await remote.info() as { ID: string }).ID).toBe((await docker.info() as { ID: string }).ID);
    const lists = await Promise.all(Array.from({ length: 12 }, () => remote.listImages()));
    expect(lists.every((l) => l.some((image) => image.RepoTags?.includes(BASE_IMAGE)))).toBe(true);
    const chunks: Buffer[] = [];
    for await (const chunk of await remote.getImage(BASE_IMAGE).get()) chunks.push(chunk as Buffer);
    const tar = Buffer.concat(chunks);
    expect(tar.length, 'the base image as a tar').toBeGreaterThan(500_000);
    // A request body streamed the other way, as a push loads the image into the manager's engine first.
    let answer = '';
    for await (const chunk of await remote.loadImage(Readable.from([tar]))) answer += String(chunk);
    expect(answer).toContain(`Loaded image: ${BASE_IMAGE}`);
  });

  it('never hands out a pooled pipe whose ssh has ended (the manager restarted, the network dropped)', async () => {
    const remote = manager();
    expect(String(await remote.ping())).toBe('OK');
    // Ended, and noticed: the pooled pipe is gone before the next call.
    const first = endPipes();
    await waitFor('the pipes to end', () => first.every(ended));
    expect(String(await remote.ping()), 'on a new pipe').toBe('OK');
    // Ended a moment before the next call, before this process has heard of it (the wait does not let the
    // event loop turn): the call's first bytes meet a dead ssh, and a new one takes them.
    const second = endPipes();
    const deadline = Date.now() + 10_000;
    while (!second.every(ended)) if (Date.now() > deadline) throw new Error('the ssh pipes did not end');
    expect(String(await remote.ping()), 'on a new pipe, though the old one\'s end was not yet seen').toBe('OK');
  });

  it('lets a command end once it is done: a pooled pipe left idle does not hold the process', async () => {
    const module = new URL('../src/swarm/swarm-service.ts', import.meta.url).pathname.replace('/src/', '/dist/').replace(/\.ts$/, '.js');
    const engine = { type: 'swarm', manager: `ssh://root@127.0.0.1:${port}`, ssh: { key: file('client'), known_hosts: file('known_hosts') } };
    const script = `const { managerClient } = await import(${JSON.stringify(module)}); const m = managerClient(${JSON.stringify(engine)}); await m.ping(); await m.version(); console.log('done');`;
    const started = Date.now();
    const { stdout } = await runCommand([process.execPath, '--input-type=module', '-e', script], { timeoutMs: 20_000 });
    expect(stdout.trim()).toBe('done');
    expect(Date.now() - started, 'exited on its own, not at the pool\'s idle timeout (60 s)').toBeLessThan(15_000);
  });

  it('refuses a manager whose host key is not the one trusted: unavailable, in ssh\'s own words, and never asks', async () => {
    await runCommand(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', file('other')]);
    writeFileSync(file('other_known_hosts'), `[127.0.0.1]:${port} ${readFileSync(file('other.pub'), 'utf8')}`);
    const err = await manager(file('other_known_hosts')).ping().then(() => null, (e: unknown) => dockerError(e, 'pinging the manager'));
    expect(err).toMatchObject({ code: 'unavailable' });
    expect(err?.message).toMatch(/Host key verification failed/);
  });
});
