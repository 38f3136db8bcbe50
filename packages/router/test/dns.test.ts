import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { type DnsmasqService, freePort, ownFrontTier, ownNginx, startDnsmasq, stopProcess, tempDir, testAppName, testStack, uniqueName } from '@slipway/devstack/testing';
import { createEtcdClient } from '@slipway/etcd/client';
import { startDnsRouter, watchDnsHosts } from '../src/dns-feed.js';
import { dnsmasqArgv, dnsmasqPaths, resolveHost, runDnsmasq } from '../src/dns-server.js';
import { applyDnsNginxConf } from '../src/nginx-apply.js';
import { listenerHolders } from '../src/nginx-reload.js';
import { backListen } from '../src/tiers.js';
import { dnsNames, nginxNames, RESOLVER_CACHE_MS } from '../src/render.js';
import { appsConfig, backend, fetchText, within } from './helpers.js';

const etcdctl = (url: string, ...args: string[]) =>
  runCommand(['etcdctl', '--endpoints', url, ...args], { env: { ...process.env, ETCDCTL_API: '3' } });

describe('routing: dns — etcd → dnsmasq → nginx', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let dnsmasq: DnsmasqService;
  let etcd: Etcd3;
  let etcdUrl: string;
  const dir = tempDir('slipway-router-dns-');

  beforeAll(async () => {
    nginx = await ownNginx();
    dnsmasq = await startDnsmasq(join(dir.path, 'dnsmasq'), await freePort());
    etcdUrl = testStack().etcd!.url;
    etcd = createEtcdClient([etcdUrl]);
  });
  afterAll(async () => {
    etcd?.close();
    await nginx?.stop();
    if (dnsmasq) await stopProcess(dnsmasq.pid);
    dir.remove();
  });

  const dnsSettings = () => ({ server: dnsmasq.server, domain: dnsmasq.domain, address_pool: '127.0.11.0/24' });
  async function dnsApp(over: Record<string, unknown> = {}) {
    const name = testAppName();
    const apps = appsConfig({ [name]: { routing: 'dns', port: await freePort(), listen: `127.0.0.1:${await freePort()}`, etcd_prefix: `${uniqueName('/test/dns')}/${name}`, ...over } });
    return { apps, app: apps[name]! };
  }
  const answer = (name: string) => resolveHost(dnsmasq.server, dnsNames.host(name, dnsmasq.domain));

  it('feeds dnsmasq from etcd: an etcdctl put or del is answered within a second; an empty set keeps the last answer', async () => {
    const { apps, app } = await dnsApp();
    const feed = await watchDnsHosts({ apps, dns: dnsSettings(), etcd, hostsDir: dnsmasq.hostsDir });
    try {
      expect(await answer(app.name)).toEqual([]);
      const timings: number[] = [];
      await etcdctl(etcdUrl, 'put', `${app.etcd_prefix}/aaaaaaaaaaaa`, `127.0.11.1:${app.port}`);
      timings.push(await within(5000, async () => (await answer(app.name)).join() === '127.0.11.1', 'a put answered'));
      await etcdctl(etcdUrl, 'put', `${app.etcd_prefix}/bbbbbbbbbbbb`, `127.0.11.2:${app.port}`);
      timings.push(await within(5000, async () => (await answer(app.name)).join() === '127.0.11.1,127.0.11.2', 'a second put answered'));
      await etcdctl(etcdUrl, 'del', `${app.etcd_prefix}/aaaaaaaaaaaa`);
      timings.push(await within(5000, async () => (await answer(app.name)).join() === '127.0.11.2', 'a del answered'));
      console.log(`dns feed: etcdctl change → dnsmasq answering it: ${timings.map((t) => `${t} ms`).join(', ')}`);

      // Not answerable by an A record at the app's port: never written.
      await etcdctl(etcdUrl, 'put', `${app.etcd_prefix}/cccccccccccc`, '127.0.0.1:32768');
      await etcdctl(etcdUrl, 'del', `${app.etcd_prefix}/bbbbbbbbbbbb`);
      await new Promise((r) => setTimeout(r, 300));
      expect(await answer(app.name)).toEqual(['127.0.11.2']);
      expect(await readFile(dnsNames.hostsFile(dnsmasq.hostsDir, app.name), 'utf8')).toBe(`127.0.11.2 ${app.name}.${dnsmasq.domain}\n`);
    } finally {
      await feed.close();
    }
  });

  it('nginx resolves through dnsmasq: traffic follows etcd with no reload; the file is written once', async () => {
    const { apps, app } = await dnsApp();
    const backends = [await backend('a', { host: '127.0.11.11', port: app.port }), await backend('b', { host: '127.0.11.12', port: app.port })];
    const router = await startDnsRouter({ apps, nginx: nginx.settings, dns: dnsSettings(), etcd, hostsDir: dnsmasq.hostsDir, dnsmasq: false });
    const file = nginxNames.path(nginx.settings.conf_dir, app.name);
    try {
      // No first deploy yet: the router does not create the file.
      await expect(readFile(file)).rejects.toThrow(/ENOENT/);
      await etcd.put(`${app.etcd_prefix}/aaaaaaaaaaaa`).value(backends[0]!.address);
      await within(5000, async () => (await answer(app.name)).length === 1, 'the first key answered');
      const first = await applyDnsNginxConf({ nginx: nginx.settings, app, dns: dnsSettings() });
      expect(first).toMatchObject({ changed: true, reloaded: true, reload: { outcome: 'confirmed' } });
      expect(await fetchText(app.listen)).toBe('200 a');
      const workers = (await listenerHolders(app.listen))!.workers;

      await etcd.put(`${app.etcd_prefix}/bbbbbbbbbbbb`).value(backends[1]!.address);
      await etcd.delete().key(`${app.etcd_prefix}/aaaaaaaaaaaa`);
      const ms = await within(RESOLVER_CACHE_MS + 1000, async () => {
        const seen = new Set<string>();
        for (let i = 0; i < 6; i++) seen.add(await fetchText(app.listen));
        return seen.size === 1 && seen.has('200 b');
      }, 'nginx following DNS');
      console.log(`dns: etcd switch → nginx serving only the new address after ${ms} ms (resolver valid + cache: at most ${RESOLVER_CACHE_MS} ms)`);
      expect(await applyDnsNginxConf({ nginx: nginx.settings, app, dns: dnsSettings() })).toMatchObject({ changed: false, reloaded: false });
      expect((await listenerHolders(app.listen))!.workers, 'nginx was not reloaded').toEqual(workers);
    } finally {
      await router.close();
    }

    // A configuration change reaches the existing file when the router starts.
    const changed = { ...apps, [app.name]: { ...app, server_name: ['dns.example'] } };
    const again = await startDnsRouter({ apps: changed, nginx: nginx.settings, dns: dnsSettings(), etcd, hostsDir: dnsmasq.hostsDir, dnsmasq: false });
    await again.close();
    expect(await readFile(file, 'utf8')).toContain('server_name dns.example;');
    expect(await fetchText(app.listen)).toBe('200 b');
    await Promise.all(backends.map((b) => b.close()));
  });

  it('two dns apps on one nginx share the backend variable\'s name, each request with its own app\'s value', async () => {
    const [one, two] = [await dnsApp(), await dnsApp()];
    const backends = [await backend('one', { host: '127.0.11.21', port: one.app.port }), await backend('two', { host: '127.0.11.22', port: two.app.port })];
    const feed = await watchDnsHosts({ apps: { ...one.apps, ...two.apps }, dns: dnsSettings(), etcd, hostsDir: dnsmasq.hostsDir });
    try {
      await etcd.put(`${one.app.etcd_prefix}/aaaaaaaaaaaa`).value(backends[0]!.address);
      await etcd.put(`${two.app.etcd_prefix}/aaaaaaaaaaaa`).value(backends[1]!.address);
      await within(5000, async () => (await answer(one.app.name)).length === 1 && (await answer(two.app.name)).length === 1, 'both apps answered');
      for (const { app } of [one, two]) await applyDnsNginxConf({ nginx: nginx.settings, app, dns: dnsSettings() });
      const bodies = await Promise.all(Array.from({ length: 8 }, (_, i) => fetchText((i % 2 ? two : one).app.listen)));
      expect(bodies).toEqual(Array.from({ length: 8 }, (_, i) => (i % 2 ? '200 two' : '200 one')));
    } finally {
      await feed.close();
      await Promise.all(backends.map((b) => b.close()));
    }
  });

  it('with two tiers: the front forwards to the back\'s socket, and the back resolves through dnsmasq', async () => {
    const front = await ownFrontTier(nginx.settings);
    const { apps, app } = await dnsApp();
    const server = await backend('tiers', { host: '127.0.11.23', port: app.port });
    const feed = await watchDnsHosts({ apps, dns: dnsSettings(), etcd, hostsDir: dnsmasq.hostsDir });
    try {
      await etcd.put(`${app.etcd_prefix}/aaaaaaaaaaaa`).value(server.address);
      await within(5000, async () => (await answer(app.name)).length === 1, 'the app answered');
      expect(await applyDnsNginxConf({ nginx: front.settings, app, dns: dnsSettings() })).toMatchObject({ changed: true, reloaded: true });
      const back = backListen(front.settings, app.name)!;
      expect(await readFile(nginxNames.path(nginx.settings.conf_dir, app.name), 'utf8')).toContain(`listen ${back};`);
      expect(await readFile(nginxNames.path(front.settings.front.conf_dir, app.name), 'utf8')).toContain(`listen ${app.listen};`);
      expect(await fetchText(app.listen)).toBe('200 tiers');
    } finally {
      await feed.close();
      await server.close();
      // The back's file listens in the front's socket directory, which goes with the front: the shared back must not keep it.
      await rm(nginxNames.path(nginx.settings.conf_dir, app.name), { force: true });
      await runCommand(nginx.settings.reload_cmd);
      await front.stop();
    }
  });

  it('runs Slipway\'s own dnsmasq: answers from its hosts directory, comes back after a crash, stops on close', async () => {
    const work = tempDir('slipway-router-dnsmasq-');
    const { hostsDir, pidFile } = dnsmasqPaths(work.path);
    const server = `127.0.0.1:${await freePort()}`;
    const lines: string[] = [];
    const handle = await runDnsmasq({ server, domain: 'slipway.internal', hostsDir, pidFile, log: (l) => lines.push(l) });
    try {
      await writeFile(join(hostsDir, 'x'), '127.0.11.7 x.slipway.internal\n');
      await within(5000, async () => (await resolveHost(server, 'x.slipway.internal')).join() === '127.0.11.7', 'an answer from the hosts file');
      const pid = handle.pid!;
      process.kill(pid, 'SIGKILL');
      await within(5000, async () => handle.pid !== pid && (await resolveHost(server, 'x.slipway.internal').catch(() => [])).join() === '127.0.11.7', 'dnsmasq back after a crash');
      expect(lines.join('\n')).toMatch(/dnsmasq exited \(SIGKILL\); starting it again/);
    } finally {
      await handle.close();
    }
    await expect(resolveHost(server, 'x.slipway.internal')).rejects.toMatchObject({ code: 'unavailable', service: 'dns' });
    // A second one where a DNS server already answers fails loudly instead of feeding nobody.
    const busy = await runDnsmasq({ server: dnsmasq.server, domain: 'slipway.internal', hostsDir, pidFile }).catch((e: unknown) => e);
    expect(busy).toMatchObject({ code: 'dnsmasq_failed' });
    expect((busy as Error).message).toMatch(/already answers DNS on/);
    work.remove();
  });

  it('starts dnsmasq again after a restart that could not even spawn it (its binary gone a moment), later and later while that lasts', async () => {
    const work = tempDir('slipway-router-dnsmasq-');
    const { hostsDir, pidFile } = dnsmasqPaths(work.path);
    const bin = join(work.path, 'dnsmasq');
    const real = (await runCommand(['sh', '-c', 'command -v dnsmasq || echo /usr/sbin/dnsmasq'])).stdout.trim();
    await symlink(real, bin);
    const server = `127.0.0.1:${await freePort()}`;
    const lines: string[] = [];
    const handle = await runDnsmasq({ server, domain: 'slipway.internal', hostsDir, pidFile, bin, log: (l) => lines.push(l) });
    try {
      const pid = handle.pid!;
      await rm(bin);
      process.kill(pid, 'SIGKILL');
      await within(5000, async () => lines.some((l) => /dnsmasq could not be started; starting it again in \d+ ms/.test(l)), 'the failed restart said');
      await symlink(real, bin);
      await within(10_000, async () => handle.pid !== pid && (await resolveHost(server, 'nothing.slipway.internal').then(() => true, () => false)), 'dnsmasq back once it can be spawned');
    } finally {
      await handle.close();
      work.remove();
    }
  });

  it('with its own dnsmasq, drops the hosts files of apps no longer routed by DNS: a name added back with no live key is not answered with its old addresses', async () => {
    const work = tempDir('slipway-router-dnsmasq-');
    const { hostsDir, pidFile } = dnsmasqPaths(work.path);
    await mkdir(hostsDir, { recursive: true });
    const { apps, app } = await dnsApp();
    const server = `127.0.0.1:${await freePort()}`;
    const dns = { ...dnsSettings(), server };
    // What an earlier router left: the file of an app since removed from the configuration.
    await writeFile(join(hostsDir, 'gone-app'), `127.0.11.99 ${dnsNames.host('gone-app', dns.domain)}\n`);
    await writeFile(join(hostsDir, app.name), `127.0.11.98 ${dnsNames.host(app.name, dns.domain)}\n`);
    const lines: string[] = [];
    const router = await startDnsRouter({ apps, nginx: nginx.settings, dns, etcd, hostsDir, dnsmasq: { pidFile }, log: (l) => lines.push(l) });
    try {
      expect(await resolveHost(server, dnsNames.host('gone-app', dns.domain))).toEqual([]);
      expect(await resolveHost(server, dnsNames.host(app.name, dns.domain))).toEqual(['127.0.11.98']);
      expect(lines.join('\n')).toContain(`removed ${join(hostsDir, 'gone-app')}: no routing: dns app of that name is configured any more`);
    } finally {
      await router.close();
      work.remove();
    }
  });

  it('takes over from a dnsmasq an earlier slipway router left running on its pid file (killed with -9), where another DNS server is refused', async () => {
    const work = tempDir('slipway-router-dnsmasq-');
    const { hostsDir, pidFile } = dnsmasqPaths(work.path);
    await mkdir(hostsDir, { recursive: true });
    const server = `127.0.0.1:${await freePort()}`;
    const argv = dnsmasqArgv({ server, domain: 'slipway.internal', hostsDir, pidFile });
    const left = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    try {
      await within(5000, async () => resolveHost(server, 'nothing.slipway.internal').then(() => true, () => false), 'the left dnsmasq answering');
      const lines: string[] = [];
      const handle = await runDnsmasq({ server, domain: 'slipway.internal', hostsDir, pidFile, log: (l) => lines.push(l) });
      try {
        expect(lines.join('\n')).toContain(`stopping pid ${left.pid}, which an earlier slipway router left running`);
        expect(handle.pid).not.toBe(left.pid);
        await writeFile(join(hostsDir, 'y'), '127.0.11.8 y.slipway.internal\n');
        await within(2000, async () => (await resolveHost(server, 'y.slipway.internal').catch(() => [])).join() === '127.0.11.8', 'the new dnsmasq answering');
      } finally {
        await handle.close();
      }
    } finally {
      left.kill('SIGKILL');
      work.remove();
    }
  });
});
