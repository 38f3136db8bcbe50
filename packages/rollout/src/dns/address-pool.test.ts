import { describe, expect, it } from 'vitest';
import { containerSpec } from '../container-runtime.js';
import { allocateAddresses, poolAddresses, publishOn } from './address-pool.js';

describe('poolAddresses', () => {
  it.each([
    ['127.0.10.0/24', 254, '127.0.10.1', '127.0.10.254'],
    ['127.0.10.0/30', 2, '127.0.10.1', '127.0.10.2'],
    ['127.0.10.77/24', 254, '127.0.10.1', '127.0.10.254'],
    ['10.1.0.0/16', 65534, '10.1.0.1', '10.1.255.254'],
  ])('%s: %i host addresses from %s to %s', (cidr, count, first, last) => {
    const all = poolAddresses(cidr);
    expect([all.length, all[0], all.at(-1)]).toEqual([count, first, last]);
  });
});

describe('allocateAddresses', () => {
  it.each([
    ['lowest free first', [], 2, ['127.0.10.1', '127.0.10.2']],
    ['skips every taken one, whatever app or state holds it', ['127.0.10.1', '127.0.10.3'], 2, ['127.0.10.2', '127.0.10.4']],
    ['ignores addresses outside the pool', ['10.0.0.1'], 1, ['127.0.10.1']],
  ])('%s', (_what, taken, count, expected) => {
    expect(allocateAddresses('127.0.10.0/24', taken, count)).toEqual(expected);
  });

  it('refuses when the pool is too small', () => {
    expect(() => allocateAddresses('127.0.10.0/30', ['127.0.10.1'], 2)).toThrow(expect.objectContaining({ code: 'address_pool_exhausted' }));
  });
});

describe('publishOn', () => {
  const app = { name: 'hello', port: 8080, host_ip: '127.0.0.2', env: { A: '1', DATABASE_URL: 'postgres://x' }, stop_timeout_s: 12 };
  it('publishes the app port on its own pool address at the same port, and labels the address', () => {
    const spec = publishOn(containerSpec({ app, image: 'img', sha: null, release: '1' }), 8080, '127.0.10.7');
    expect(spec.Labels).toEqual({ 'slipway.app': 'hello', 'slipway.release': '1', 'slipway.address': '127.0.10.7' });
    expect(spec.HostConfig).toEqual({ PortBindings: { '8080/tcp': [{ HostIp: '127.0.10.7', HostPort: '8080' }] }, RestartPolicy: { Name: 'unless-stopped' } });
  });
});
