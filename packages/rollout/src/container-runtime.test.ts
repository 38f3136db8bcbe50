import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { startWedgedPeer } from '@slipway/devstack/testing';
import { containerSpec, demux, DockerRuntime } from './container-runtime.js';

const app = { name: 'hello', port: 8080, host_ip: '127.0.0.2', env: { A: '1', DATABASE_URL: 'postgres://x' }, stop_timeout_s: 12 };

describe('containerSpec', () => {
  it.each([
    ['a commit deploy', 'b'.repeat(40), { 'slipway.app': 'hello', 'slipway.sha': 'b'.repeat(40), 'slipway.release': '42' }],
    ['an image deploy (no sha label)', null, { 'slipway.app': 'hello', 'slipway.release': '42' }],
  ])('labels %s', (_what, sha, labels) => {
    expect(containerSpec({ app, image: 'slipway/hello:bbbbbbbbbbbb', sha, release: '42' }).Labels).toEqual(labels);
  });

  it('publishes the app port on host_ip with a Docker-chosen port, restarts, and stops gracefully', () => {
    expect(containerSpec({ app, image: 'img', sha: null, release: '1' })).toEqual({
      Image: 'img',
      Env: ['A=1', 'DATABASE_URL=postgres://x'],
      Labels: { 'slipway.app': 'hello', 'slipway.release': '1' },
      ExposedPorts: { '8080/tcp': {} },
      StopTimeout: 12,
      HostConfig: { PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.2', HostPort: '' }] }, RestartPolicy: { Name: 'unless-stopped' } },
    });
  });

  it('limits CPU and memory by apps.<app>.resources, on one engine as on a swarm', () => {
    const limited = containerSpec({ app: { ...app, resources: { cpus: 0.5, memory_mb: 256 } }, image: 'img', sha: null, release: '1' });
    expect(limited.HostConfig).toMatchObject({ NanoCpus: 500_000_000, Memory: 256 * 1024 * 1024 });
  });
});

const frame = (stream: number, text: string) => {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
};

describe('demux', () => {
  it('joins stdout and stderr frames in order', () => {
    expect(demux(Buffer.concat([frame(1, 'starting v1\n'), frame(2, 'fatal: cannot open database\n')]))).toBe('starting v1\nfatal: cannot open database\n');
  });
  it('passes TTY output through', () => expect(demux(Buffer.from('plain text\n'))).toBe('plain text\n'));
});

describe('DockerRuntime against an engine that never answers', () => {
  it('gives each call up after its timeout as unavailable (retried): a wedged engine never holds a rollout, and its app\'s lock, for ever', async () => {
    // An engine wedged after the connection: it accepts, reads, and says nothing.
    const peer = await startWedgedPeer();
    const { port, held } = peer;
    try {
      const runtime = new DockerRuntime(new Docker({ host: '127.0.0.1', port, protocol: 'http' }), { timeoutMs: 300 });
      await expect(runtime.listAppContainers('web', 8080)).rejects.toMatchObject({ code: 'unavailable', message: expect.stringContaining('Docker did not answer within 0.3 s while listing the containers of web') });
      await expect(runtime.startContainer(containerSpec({ app, image: 'img', sha: null, release: '1' }), 8080)).rejects.toMatchObject({ code: 'unavailable' });
      await expect(runtime.healthState('a'.repeat(64))).rejects.toMatchObject({ code: 'unavailable' });
      // A stop is given its grace period more (here 1 s): still given up.
      await expect(runtime.stopAndRemove('a'.repeat(64), 1)).rejects.toMatchObject({ code: 'unavailable', message: expect.stringContaining('within 1.3 s while stopping') });
      await expect(runtime.forceRemove('a'.repeat(64))).rejects.toMatchObject({ code: 'unavailable' });
      // The abandoned requests were aborted, not left open on the engine.
      await expect.poll(() => held.filter((s) => !s.destroyed && !s.readableEnded).length, { timeout: 2_000 }).toBe(0);
    } finally {
      await peer.close();
    }
  });
});
