import { afterAll, beforeAll } from 'vitest';
import { etcdKeys } from '@slipway/etcd/keys';
import { chmodSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import { validateConfig } from '@slipway/config/load-config';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import {
  type DnsmasqService, type FixtureVariant, freePort, ownNginx, type RelayedConnection, startDnsmasq, startTcpRelay, stopProcess, tempDir, testAppName, testStack, uniqueLoopbackNet, writeFixtureApp,
} from '@slipway/devstack/testing';
import { createEtcdClient } from '@slipway/etcd/client';
import { compareIps, type DnsHostsFeed, watchDnsHosts } from '@slipway/router/dns';
import { startRegistrar, type RegistrarHandle, type RegistrarOptions } from '../src/dns/registrar.js';
import { LABELS } from '@slipway/core/docker';

export const docker = new Docker();

/** Builds the sample app at `version` as `slipway/<app>:<tag>` (removed by the stack's teardown). */
export async function buildImage(app: string, version: string, variant: FixtureVariant = 'ok', tag = version): Promise<string> {
  const dir = tempDir('slipway-fixture-');
  try {
    writeFixtureApp(dir.path, { version, variant });
    // Which container answered (its hostname is its short id): for tests that follow traffic per container.
    writeFileSync(join(dir.path, 'www', 'cgi-bin', 'host'), '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\nhostname\n');
    chmodSync(join(dir.path, 'www', 'cgi-bin', 'host'), 0o755);
    return await buildContext(dir.path, ['Dockerfile', 'run.sh', 'www'], `slipway/${app}:${tag}`);
  } finally {
    dir.remove();
  }
}

/** Builds `image` from the files `src` of `dir` on the test engine (nothing pulled), failing with the build's error. */
export async function buildContext(dir: string, src: string[], image: string): Promise<string> {
  const stream = await docker.buildImage({ context: dir, src }, { t: image });
  await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null, events: Array<{ error?: string }>) => {
    const failure = err?.message ?? events.find((e) => e.error)?.error;
    if (failure) reject(new Error(`build of ${image} failed: ${failure}`));
    else resolve();
  }));
  return image;
}

/** A fresh app (name from testAppName) listening on a loopback port of its own; config defaults filled in. */
export async function testApp(over: Record<string, unknown> = {}): Promise<AppConfig> {
  const name = testAppName();
  return validateConfig({
    apps: { [name]: { repo: 'https://example.com/acme/app.git', listen: `127.0.0.1:${await freePort()}`, replicas: 2, drain_s: 5, stop_timeout_s: 5, health: { timeout_s: 20, interval_ms: 100 }, ...over } },
  }, { file: null, env: {} }).apps[name]!;
}

export const stackEtcd = (): Etcd3 => createEtcdClient([testStack().etcd!.url]);

/**
 * An etcd client for tests of the release store, and the apps they make:
 * once the file's tests are done, each app's `/test/<app>/` keys, release
 * and history go, and the client closes.
 */
export function releaseStoreWorld(): { etcd: Etcd3; apps: string[] } {
  const etcd = stackEtcd();
  const apps: string[] = [];
  afterAll(async () => {
    for (const app of apps) {
      await etcd.delete().prefix(`/test/${app}/`);
      await etcd.delete().key(etcdKeys.release(app));
      await etcd.delete().prefix(etcdKeys.releases(app));
    }
    etcd.close();
  });
  return { etcd, apps };
}

/** The app's containers, by label. */
export async function appContainers(app: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.app}=${app}`] } });
}

/** The IPs of `containers` (`ip:port` addresses) as a DNS answer lists them: numerically sorted, like resolveHost. */
export function answerOf(containers: ReadonlyArray<{ address: string }>): string[] {
  return containers.map((c) => c.address.split(':')[0]!).sort(compareIps);
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

/** A dnsmasq of the test's own (the devstack's service), and the `dns:` settings pointing at it, with an address pool of the test's own. */
export async function ownDns(): Promise<{ service: DnsmasqService; settings: SlipwayConfig['dns']; stop: () => Promise<void> }> {
  const dir = tempDir('slipway-rollout-dns-');
  const service = await startDnsmasq(join(dir.path, 'dnsmasq'), await freePort());
  return {
    service,
    settings: { server: service.server, domain: service.domain, address_pool: uniqueLoopbackNet() },
    stop: async () => {
      await stopProcess(service.pid);
      dir.remove();
    },
  };
}

/**
 * What `slipway router` runs for dns apps, for the test's own apps: the
 * DNS feed into the test's dnsmasq and a registrar (its own etcd client,
 * so a test can cut it off like a crashed process).
 */
export async function serveDns(dns: Awaited<ReturnType<typeof ownDns>>, apps: AppConfig[], options: Partial<RegistrarOptions> = {}): Promise<{
  registrar: RegistrarHandle; feed: DnsHostsFeed; registrarEtcd: Etcd3; close: () => Promise<void>;
}> {
  const byName = Object.fromEntries(apps.map((a) => [a.name, a]));
  const etcd = stackEtcd();
  const registrarEtcd = options.etcd ?? stackEtcd();
  const feed = await watchDnsHosts({ apps: byName, dns: dns.settings, etcd, hostsDir: dns.service.hostsDir });
  const registrar = await startRegistrar({ apps: byName, docker, ...options, etcd: registrarEtcd });
  return {
    registrar, feed, registrarEtcd,
    close: async () => {
      await registrar.close();
      await feed.close();
      etcd.close();
      if (!options.etcd) registrarEtcd.close();
    },
  };
}

/**
 * A TCP relay to the stack's etcd, for a client that must be cut off the
 * way a crashed process is (`cut()`: every connection reset, nothing
 * revoked). Closing an etcd3 client is not that: open gRPC streams (lease
 * keep-alives) go on until they end. `hold()` keeps etcd's answers back
 * (requests still reach it) until `release()`: a slow etcd, seen from the
 * client. `resetAnswers(marker, n)` replaces etcd's answers to the next
 * `n` calls whose request carries `marker` (a key) by an HTTP/2 RST_STREAM
 * INTERNAL_ERROR and drops the connection: a proxy failing after etcd
 * applied the call. The etcd3 client takes that for INTERNAL, and sends
 * the call again by itself (its default retry policy) up to three times.
 */
export async function etcdRelay(): Promise<{ client: Etcd3; cut: () => void; hold: () => void; release: () => void; resetAnswers: (marker: string, count: number) => void }> {
  const target = new URL(testStack().etcd!.url);
  let held: Array<() => void> | null = null;
  let reset = { marker: Buffer.alloc(0), left: 0 };
  // Both directions read frame by frame (9-byte header: length, type, flags, stream); the client's starts with a 24-byte preface.
  const parsers = new WeakMap<RelayedConnection, { toServer: (chunk: Buffer) => void; toClient: (chunk: Buffer) => void }>();
  const parsersOf = (c: RelayedConnection) => {
    let parser = parsers.get(c);
    if (!parser) {
      const marked = new Set<number>();
      parser = {
        toServer: http2Frames(24, (type, stream, frame) => {
          if (type === 0x0 && reset.left > 0 && frame.includes(reset.marker, 9)) marked.add(stream);
        }),
        toClient: http2Frames(0, (type, stream, frame) => {
          if (type === 0x1 && marked.has(stream) && reset.left > 0) {
            reset.left -= 1;
            const rst = Buffer.alloc(13);
            rst.writeUIntBE(4, 0, 3);
            rst[3] = 0x3;
            rst.writeUInt32BE(stream, 5);
            rst.writeUInt32BE(0x2, 9);
            c.client.end(rst);
            c.server.destroy();
            return false;
          }
          if (held) held.push(() => c.client.write(frame));
          else c.client.write(frame);
          return true;
        }),
      };
      parsers.set(c, parser);
    }
    return parser;
  };
  const relay = await startTcpRelay({ host: target.hostname, port: Number(target.port) }, {
    toServer: (chunk, c) => {
      parsersOf(c).toServer(chunk);
      c.server.write(chunk);
    },
    toClient: (chunk, c) => parsersOf(c).toClient(chunk),
    serverEnded: (c) => (held ? held.push(() => c.client.end()) : c.client.end()),
  });
  return {
    client: createEtcdClient([`http://127.0.0.1:${relay.port}`]),
    cut: relay.cut,
    hold: () => {
      held ??= [];
    },
    release: () => {
      const waiting = held ?? [];
      held = null;
      for (const write of waiting) write();
    },
    resetAnswers: (marker, count) => {
      reset = { marker: Buffer.from(marker), left: count };
    },
  };
}

/** A `data` handler that calls `onFrame` with each whole HTTP/2 frame after the first `skip` bytes (not passed on), until it returns false. */
function http2Frames(skip: number, onFrame: (type: number, stream: number, frame: Buffer) => boolean | void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  let toSkip = skip;
  let done = false;
  return (chunk) => {
    if (done) return;
    pending = Buffer.concat([pending, chunk]);
    const skipped = Math.min(toSkip, pending.length);
    pending = pending.subarray(skipped);
    toSkip -= skipped;
    while (!done && pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3)) {
      const frame = pending.subarray(0, 9 + pending.readUIntBE(0, 3));
      pending = pending.subarray(frame.length);
      if (onFrame(frame[3]!, frame.readUInt32BE(5) & 0x7fffffff, frame) === false) done = true;
    }
  };
}

export interface RolloutWorld {
  nginx: Awaited<ReturnType<typeof ownNginx>>;
  etcd: Etcd3;
  dns?: Awaited<ReturnType<typeof ownDns>>;
}

/**
 * The services a rollout test file shares: an nginx of its own, the
 * stack's etcd, and with `dns` a dnsmasq of its own. Registers the
 * beforeAll/afterAll that start and stop them and hands them to `assign`.
 */
export function useRolloutWorld(assign: (world: RolloutWorld) => void, options: { dns?: boolean } = {}): void {
  let world: RolloutWorld | undefined;
  beforeAll(async () => {
    const [nginx, dns] = await Promise.all([ownNginx(), options.dns ? ownDns() : Promise.resolve(undefined)]);
    world = { nginx, dns, etcd: stackEtcd() };
    assign(world);
  });
  afterAll(async () => {
    world?.etcd.close();
    await world?.nginx.stop();
    await world?.dns?.stop();
  });
}

/** Requests nginx in a loop (fresh connection each) until stopped; returns what it answered, deduplicated. */
export function watchServing(listen: string): { stop: () => Promise<{ answers: string[]; count: number }> } {
  let running = true;
  const answers = new Set<string>();
  let count = 0;
  const loop = (async () => {
    while (running) {
      answers.add(await fetchText(listen));
      count++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return { stop: async () => { running = false; await loop; return { answers: [...answers], count }; } };
}
