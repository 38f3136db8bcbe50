import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, isAlive, spawnService, waitFor } from '../processes.js';
import { httpOk } from '../services.js';
import type { HostState } from './hosts.js';

/** Where the registry listens on its host: `<host 1>:5000`, as in issue 18's example. */
export const REGISTRY_PORT = 5000;

/**
 * A Docker registry (Debian's `docker-registry`, distribution 2.8) on a
 * simulated host, in plain HTTP, and a TCP forwarder to it on loopback.
 *
 * Two names, one registry: the hosts pull `<address>:5000/slipway/app:sha`
 * (each engine lists that address under `insecure-registries`, the
 * harness writes their daemon.json); the machine's own engine, where
 * Slipway builds and whose configuration nobody may touch, trusts plain
 * HTTP only on 127.0.0.0/8, so it pushes to `127.0.0.1:<port>/slipway/app:sha`
 * through the forwarder. Images are stored by digest, so what was pushed
 * under one name is pulled under the other.
 */
export interface RegistryState {
  /** `10.77.<n>.11:5000`: the name the hosts use (`engine.registry` for Slipway). */
  address: string;
  /** `127.0.0.1:<port>`: the name the machine's engine pushes to. */
  loopback: string;
  pid: number;
  forwarderPid: number;
  dir: string;
}

/** The registry's config.yml; pure. Deletes are allowed so tests can remove what they pushed. */
export function registryConfig(dir: string, address: string): string {
  return [
    '# Written by @slipway/devstack: a test registry on a simulated host, plain HTTP.',
    'version: 0.1',
    'log: { level: warn }',
    'storage:',
    `  filesystem: { rootdirectory: ${join(dir, 'data')} }`,
    '  delete: { enabled: true }',
    'http:',
    `  addr: ${address}`,
    // Only one registry process serves these blobs: a fixed secret just silences its warning.
    '  secret: slipway-devstack-test-registry',
    '',
  ].join('\n');
}

/**
 * The forwarder, run by `node -e` so that it is a process of its own (it
 * outlives a `slipway-devstack cluster` that printed its address and is
 * stopped by pid like every other part) without a build step. Its argv
 * ends with the cluster directory so a sweep finds it by that.
 */
const FORWARDER = `
const net = require('node:net');
const [listenHost, listenPort, targetHost, targetPort] = process.argv.slice(1);
const server = net.createServer((client) => {
  const upstream = net.connect(Number(targetPort), targetHost);
  client.pipe(upstream);
  upstream.pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
});
server.listen(Number(listenPort), listenHost);
`;

/** Starts the registry inside `host`'s network namespace and the loopback forwarder to it. */
export async function startRegistry(host: HostState, dir: string): Promise<RegistryState> {
  mkdirSync(join(dir, 'data'), { recursive: true });
  const address = `${host.address}:${REGISTRY_PORT}`;
  const config = join(dir, 'config.yml');
  writeFileSync(config, registryConfig(dir, address));
  const pid = spawnService(['nsenter', '-t', String(host.holderPid), '-n', '--', 'docker-registry', 'serve', config], join(dir, 'registry.log'));
  await answering('the registry', `http://${address}/v2/`, pid, dir);
  // The port is free when chosen and taken a moment later: another process may take it in between, so try again.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const forwarderPid = spawnService([process.execPath, '-e', FORWARDER, '--', '127.0.0.1', String(port), host.address, String(REGISTRY_PORT), dir], join(dir, 'forwarder.log'));
    try {
      await answering('the registry through loopback', `http://127.0.0.1:${port}/v2/`, forwarderPid, dir);
      return { address, loopback: `127.0.0.1:${port}`, pid, forwarderPid, dir };
    } catch (err) {
      if (attempt >= 3 || isAlive(forwarderPid)) throw err;
    }
  }
}

function answering(what: string, url: string, pid: number, dir: string): Promise<boolean> {
  return waitFor(`${what} at ${url}`, () => {
    if (!isAlive(pid)) throw new Error(`it exited; see the logs in ${dir}`);
    return httpOk(url);
  }, { timeoutMs: 20_000, intervalMs: 50 });
}

/** The repositories the registry holds (its catalog), asked through loopback. */
export async function registryRepositories(registry: RegistryState): Promise<string[]> {
  const res = await fetch(`http://${registry.loopback}/v2/_catalog`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`registry catalog answered ${res.status}`);
  return ((await res.json()) as { repositories: string[] | null }).repositories ?? [];
}
