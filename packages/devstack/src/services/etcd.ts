import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../wait-for.js';
import { spawnService } from '../processes.js';
import { httpOk } from './probes.js';

export interface EtcdService { pid: number; port: number; peerPort: number; url: string; dataDir: string }

export const etcdHealthy = (url: string) => httpOk(`${url}/health`);

/** Builds the etcd argv; pure so a restart (tests restart etcd) uses the very same one. */
export function etcdArgv(dataDir: string, port: number, peerPort: number): string[] {
  const client = `http://127.0.0.1:${port}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  return [
    'etcd', '--name', 'slipway', '--data-dir', dataDir,
    '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `slipway=${peer}`, '--initial-cluster-state', 'new',
    '--log-level', 'warn', '--logger', 'zap',
  ];
}

/** A single-node etcd on loopback with its data under `dir`. */
export async function startEtcd(dir: string, port: number, peerPort: number): Promise<EtcdService> {
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const pid = spawnService(etcdArgv(dataDir, port, peerPort), join(dir, 'etcd.log'), { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? '' : process.arch });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`etcd at ${url}`, () => etcdHealthy(url), { timeoutMs: 30_000 });
  return { pid, port, peerPort, url, dataDir };
}
