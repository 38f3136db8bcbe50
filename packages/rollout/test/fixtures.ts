import { createServer } from 'node:net';
import { join } from 'node:path';
import Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import { validateConfig } from '@slipway/config/load-config';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { writeFixtureApp, type FixtureVariant } from '@slipway/devstack/fixture-app';
import { freePort } from '@slipway/devstack/free-port';
import { stopProcess } from '@slipway/devstack/processes';
import { startNginx, type NginxService } from '@slipway/devstack/services/nginx';
import { tempDir, testAppName, testStack } from '@slipway/devstack/testing';
import { createEtcdClient } from '@slipway/router/etcd-client';
import { LABELS } from '../src/slipway-labels.js';

export const docker = new Docker();

/** Builds the sample app at `version` as `slipway/<app>:<tag>` (removed by the stack's teardown). */
export async function buildImage(app: string, version: string, variant: FixtureVariant = 'ok', tag = version): Promise<string> {
  const dir = tempDir('slipway-fixture-');
  try {
    writeFixtureApp(dir.path, { version, variant });
    const image = `slipway/${app}:${tag}`;
    const stream = await docker.buildImage({ context: dir.path, src: ['Dockerfile', 'run.sh', 'www'] }, { t: image });
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null, events: Array<{ error?: string }>) => {
      const failure = err?.message ?? events.find((e) => e.error)?.error;
      if (failure) reject(new Error(`build of ${image} failed: ${failure}`));
      else resolve();
    }));
    return image;
  } finally {
    dir.remove();
  }
}

/** An nginx of the test's own, and the `nginx:` settings pointing at it. */
export async function ownNginx(): Promise<{ service: NginxService; settings: SlipwayConfig['nginx']; stop: () => Promise<void> }> {
  const dir = tempDir('slipway-rollout-nginx-');
  const service = await startNginx(join(dir.path, 'nginx'), await freePort());
  return {
    service,
    settings: { conf_dir: service.confDir, check_cmd: service.checkCmd, reload_cmd: service.reloadCmd },
    stop: async () => {
      await stopProcess(service.pid);
      dir.remove();
    },
  };
}

/** A fresh app (name from testAppName) listening on a loopback port of its own; config defaults filled in. */
export async function testApp(over: Record<string, unknown> = {}): Promise<AppConfig> {
  const name = testAppName();
  return validateConfig({
    apps: { [name]: { repo: 'https://example.com/acme/app.git', listen: `127.0.0.1:${await freePort()}`, replicas: 2, drain_s: 5, stop_timeout_s: 5, health: { timeout_s: 20, interval_ms: 100 }, ...over } },
  }, { file: null, env: {} }).apps[name]!;
}

export const stackEtcd = (): Etcd3 => createEtcdClient([testStack().etcd!.url]);

/** The app's containers, by label. */
export async function appContainers(app: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.app}=${app}`] } });
}

/** The body nginx answers on the app's listen address, or the error. */
export async function fetchText(listen: string, path = '/'): Promise<string> {
  try {
    const res = await fetch(`http://${listen}${path}`, { signal: AbortSignal.timeout(3000), headers: { connection: 'close' } });
    return `${res.status} ${(await res.text()).trim()}`;
  } catch (err) {
    return `error ${(err as Error).message}`;
  }
}

/** A TCP port on which nothing listens (for an unreachable etcd). */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
