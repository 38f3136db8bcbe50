import { describe, expect, it } from 'vitest';
import { isUpstreamAddress } from './etcd-keys.js';

describe('isUpstreamAddress', () => {
  it.each([
    ['127.0.0.1:32768', true], ['10.1.2.3:1', true], ['app.internal:8080', true], ['localhost:65535', true],
    ['127.0.0.1', false], ['127.0.0.1:0', false], ['127.0.0.1:65536', false], ['256.0.0.1:80', false],
    ['127.0.0.1:80;', false], ['a b:80', false], ['-x:80', false],
    // IPv6, bracketed as a swarm node's address is written and nginx's server directive takes it.
    ['[::1]:80', true], ['[2001:db8::5]:30001', true], ['[::1];:80', false], ['[2001:db8::zz]:80', false], ['[::1]', false], ['[1.2.3.4]:80', false], ['', false], [42, false],
  ])('%j → %s', (value, ok) => expect(isUpstreamAddress(value)).toBe(ok));
});
