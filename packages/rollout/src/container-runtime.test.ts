import { describe, expect, it } from 'vitest';
import { containerSpec, demux } from './container-runtime.js';

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
