import { describe, expect, it } from 'vitest';
import { containerSpec, publishOn } from './container-spec.js';

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
});

describe('publishOn (routing: dns)', () => {
  it('publishes the app port on its own pool address at the same port, and labels the address', () => {
    const spec = publishOn(containerSpec({ app, image: 'img', sha: null, release: '1' }), 8080, '127.0.10.7');
    expect(spec.Labels).toEqual({ 'slipway.app': 'hello', 'slipway.release': '1', 'slipway.address': '127.0.10.7' });
    expect(spec.HostConfig).toEqual({ PortBindings: { '8080/tcp': [{ HostIp: '127.0.10.7', HostPort: '8080' }] }, RestartPolicy: { Name: 'unless-stopped' } });
  });
});
