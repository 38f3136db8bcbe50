import type Docker from 'dockerode';
import { LABELS } from '@slipway/core/docker';
import { AddressPoolExhaustedError } from '../rollout-errors.js';

/*
 * routing: dns: each container is published on its own address of
 * `dns.address_pool`, at the app's own port (an A record carries no port).
 */

const toInt = (ip: string) => ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
const toIp = (n: number) => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');

/**
 * The host addresses of an IPv4 network (`dns.address_pool`), in order,
 * without its network and broadcast addresses (as the config check
 * counts them). Pure.
 */
export function poolAddresses(cidr: string): string[] {
  const [base = '', bitsText = ''] = cidr.split('/');
  const bits = Number(bitsText);
  const size = 2 ** (32 - bits);
  const network = toInt(base) - (toInt(base) % size);
  return Array.from({ length: Math.max(size - 2, 0) }, (_, i) => toIp(network + 1 + i));
}

/**
 * Picks `count` addresses of the pool that nothing uses, lowest first. Pure:
 * `taken` is derived from what runs (the `slipway.address` label of every
 * container, whatever its app or state), never from a record that a crash
 * could leave stale. Throws AddressPoolExhaustedError when too few are free.
 */
export function allocateAddresses(cidr: string, taken: Iterable<string>, count: number): string[] {
  const used = new Set(taken);
  const free = poolAddresses(cidr).filter((ip) => !used.has(ip));
  if (free.length < count) throw new AddressPoolExhaustedError(cidr, count, free.length);
  return free.slice(0, count);
}

/**
 * A replica's create options published on `address` of the pool at the
 * app's own port, and labelled with the address so allocations can be
 * derived from what runs. Pure.
 */
export function publishOn(spec: Docker.ContainerCreateOptions, port: number, address: string): Docker.ContainerCreateOptions {
  const key = `${port}/tcp`;
  return {
    ...spec,
    Labels: { ...spec.Labels, [LABELS.address]: address },
    HostConfig: { ...spec.HostConfig, PortBindings: { [key]: [{ HostIp: address, HostPort: String(port) }] } },
  };
}
