import { readFile } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { dnsNames, resolveHost, watchDnsHosts } from '@slipway/router/dns';
import { listenerHolders, nginxNames } from '@slipway/router/nginx';
import { etcdKeys } from '@slipway/etcd/keys';
import { appStatus } from '../src/status.js';
import { rollout } from '../src/rollout.js';
import { startDnsRouting } from '../src/dns/registrar.js';
import { freePort, ownNginx, tempDir, uniqueLoopbackNet } from '@slipway/devstack/testing';
import { answerOf, appContainers, buildImage, docker, fetchText, ownDns, serveDns, testApp, useRolloutWorld, type RolloutWorld } from './fixtures.js';

describe('routing: dns rollouts', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let dns: Awaited<ReturnType<typeof ownDns>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd, dns } = w as Required<RolloutWorld>), { dns: true });
  const answer = (app: string) => resolveHost(dns.settings.server, dnsNames.host(app, dns.settings.domain));
  /** The keys under the prefix with the lease each is on. */
  const keysWithLeases = async (prefix: string) => (await etcd.getAll().prefix(`${prefix}/`).exec()).kvs
    .map((kv) => ({ key: kv.key.toString(), address: kv.value.toString(), lease: String(kv.lease) }));

  it('publishes each container on its own pool address, switches DNS only, writes the nginx file once and never reloads after', async () => {
    const app = await testApp({ routing: 'dns' });
    const [v1, v2] = await Promise.all(['v1', 'v2'].map((v) => buildImage(app.name, v)));
    const serving = await serveDns(dns, [app]);
    const base = { app, nginx: nginx.settings, dns: dns.settings, docker, etcd, sha: null };
    try {
      const lines: string[] = [];
      const first = await rollout({ ...base, image: v1!, job: 'dns-1', log: (l) => lines.push(l) });
      const pool = dns.settings.address_pool.replace(/0\/24$/, '');
      for (const c of first.containers) expect(c.address).toMatch(new RegExp(`^${pool.replaceAll('.', '\\.')}\\d+:8080$`));
      expect(new Set(first.containers.map((c) => c.address)).size).toBe(2);
      const info = await docker.getContainer(first.containers[0]!.id).inspect();
      const ip = first.containers[0]!.address.split(':')[0]!;
      expect(info.HostConfig.PortBindings).toEqual({ '8080/tcp': [{ HostIp: ip, HostPort: '8080' }] });
      expect(info.Config.Labels['slipway.address']).toBe(ip);
      expect(await answer(app.name)).toEqual(answerOf(first.containers));
      expect(await fetchText(app.listen)).toBe('200 v1');
      const file = await readFile(nginxNames.path(nginx.settings.conf_dir, app.name), 'utf8');
      expect(file).toContain(`resolver ${dns.settings.server} valid=1s`);
      expect(file).toContain(`set $slipway_backend ${app.name}.${dns.settings.domain};`);
      expect(lines.join('\n')).toMatch(/nginx file written and reloaded once \(first deploy/);
      expect(lines.join('\n')).toMatch(/registrar took over the keys/);
      // The keys are the upstream contract's shape, on the registrar's own leases (not the rollout's, which is gone).
      const keys = await keysWithLeases(app.etcd_prefix);
      expect(keys.map((k) => [k.key, k.address]).sort()).toEqual(first.containers.map((c) => [etcdKeys.upstream(app.etcd_prefix, c.id), c.address]).sort());
      expect(new Set(keys.map((k) => k.lease)).size).toBe(2);
      expect(keys.every((k) => k.lease !== '0')).toBe(true);

      const workers = (await listenerHolders(app.listen))!.workers;
      const second = await rollout({ ...base, image: v2!, job: 'dns-2', log: (l) => lines.push(l) });
      expect(await fetchText(app.listen)).toBe('200 v2');
      expect((await listenerHolders(app.listen))!.workers, 'nginx was not reloaded').toEqual(workers);
      expect(lines.join('\n')).toMatch(/nginx not reloaded/);
      expect(second.drain).toMatchObject({ drained: true, settleMs: expect.any(Number) });
      expect(second.drain!.ms).toBeGreaterThanOrEqual(second.drain!.settleMs!);
      expect(lines.join('\n')).toMatch(/waited 2\.1 s for nginx's resolver caches, then drained: connections closed/);
      expect(await answer(app.name)).toEqual(answerOf(second.containers));
      expect((await appContainers(app.name)).map((c) => c.Id).sort()).toEqual(second.containers.map((c) => c.id).sort());

      const status = await appStatus({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd });
      expect(status).toMatchObject({ release: { job: 'dns-2' }, nginx: { inSync: true }, drift: [] });
      expect(status.upstreams.sort()).toEqual(second.containers.map((c) => c.address).sort());
    } finally {
      await serving.close();
    }
  });

  it('status says of a live release\'s container etcd does not name what the next rollout does: kept while it runs, removed once it stopped', async () => {
    const app = await testApp({ routing: 'dns', replicas: 1 });
    const image = await buildImage(app.name, 'v1');
    const serving = await serveDns(dns, [app]);
    try {
      await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image, sha: null, job: 'dns-live' });
    } finally {
      await serving.close();
    }
    // With no registrar: one running, never registered; one that never started.
    const labels = { 'slipway.app': app.name, 'slipway.release': 'dns-live' };
    const running = await docker.createContainer({ Image: image, Labels: labels });
    await running.start();
    const stopped = await docker.createContainer({ Image: image, Labels: labels });
    const { drift } = await appStatus({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd });
    expect(drift.find((line) => line.startsWith(`container ${running.id.slice(0, 12)}`))).toMatch(/it is of the live release dns-live, not registered yet/);
    expect(drift.find((line) => line.startsWith(`container ${stopped.id.slice(0, 12)}`))).toMatch(/a leftover of an unfinished rollout \(the next rollout removes it\)/);
  });

  it('status compares the DNS answer with the keys as addresses: 127.0.10.9 and 127.0.10.10 agree in either order', async () => {
    const app = await testApp({ routing: 'dns' });
    // Keys written by hand and only the DNS feed (no registrar, which would drop keys without a container).
    await etcd.put(`${app.etcd_prefix}/000000000009`).value('127.0.10.9:8080');
    await etcd.put(`${app.etcd_prefix}/000000000010`).value('127.0.10.10:8080');
    const feed = await watchDnsHosts({ apps: { [app.name]: app }, dns: dns.settings, etcd, hostsDir: dns.service.hostsDir });
    try {
      // dnsmasq reads the new hosts file when inotify tells it: wait for the answer.
      for (let i = 0; i < 100 && (await answer(app.name)).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await answer(app.name)).toEqual(['127.0.10.9', '127.0.10.10']);
      const status = await appStatus({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd });
      expect(status.drift.filter((line) => line.startsWith('DNS answers'))).toEqual([]);
    } finally {
      await feed.close();
      await etcd.delete().prefix(`${app.etcd_prefix}/`);
    }
  });

  it('refuses to switch an app no registrar serves: unavailable (registrar), nothing started, nothing changed', async () => {
    const app = await testApp({ routing: 'dns' });
    const err = await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'x' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'unavailable', service: 'registrar' });
    expect(await appContainers(app.name)).toEqual([]);
    expect(await etcd.get(etcdKeys.release(app.name)).string()).toBeNull();
  });

  it('two dns apps rolled out at once get distinct addresses', async () => {
    const [one, two] = [await testApp({ routing: 'dns', replicas: 2 }), await testApp({ routing: 'dns', replicas: 2 })];
    const serving = await serveDns(dns, [one, two]);
    try {
      const images = await Promise.all([buildImage(one.name, 'v1'), buildImage(two.name, 'v1')]);
      const results = await Promise.all([one, two].map((app, i) => rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: images[i]!, sha: null, job: `c${i}` })));
      const addresses = results.flatMap((r) => r.containers.map((c) => c.address));
      expect(new Set(addresses).size).toBe(4);
      expect([await fetchText(one.listen), await fetchText(two.listen)]).toEqual(['200 v1', '200 v1']);

      expect((await appContainers(one.name)).map((c) => c.Id).sort()).toEqual(results[0]!.containers.map((c) => c.id).sort());
    } finally {
      await serving.close();
    }
  });

  it('a pool without room for the new set is refused before anything starts (address_pool_exhausted)', async () => {
    const app = await testApp({ routing: 'dns', replicas: 2 });
    const serving = await serveDns(dns, [app]);
    // Two addresses: the first release takes both, so a rollout has no room for its new set.
    const pool = uniqueLoopbackNet(30);
    const [net = '', last = ''] = pool.replace(/\/30$/, '').match(/^(.*\.)(\d+)$/)?.slice(1) ?? [];
    const tiny = { ...dns.settings, address_pool: pool };
    try {
      const image = await buildImage(app.name, 'v1');
      const first = await rollout({ app, nginx: nginx.settings, dns: tiny, docker, etcd, image, sha: null, job: 'fits' });
      expect(first.containers.map((c) => c.address).sort()).toEqual([`${net}${Number(last) + 1}:8080`, `${net}${Number(last) + 2}:8080`]);
      const err = await rollout({ app, nginx: nginx.settings, dns: tiny, docker, etcd, image, sha: null, job: 'full' }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'address_pool_exhausted' });
      expect((await appContainers(app.name)).map((c) => c.Id).sort()).toEqual(first.containers.map((c) => c.id).sort());
      expect(await fetchText(app.listen)).toBe('200 v1');
    } finally {
      await serving.close();
    }
  });

  it('the production wiring: startDnsRouting runs dnsmasq itself under workdir, feeds it and registers; a rollout goes through it', async () => {
    const app = await testApp({ routing: 'dns' });
    const workdir = tempDir('slipway-rollout-workdir-');
    const settings = { ...dns.settings, server: `127.0.0.1:${await freePort()}` };
    const lines: string[] = [];
    const routing = await startDnsRouting({ config: { apps: { [app.name]: app }, nginx: nginx.settings, dns: settings, workdir: workdir.path }, etcd, docker, log: (l) => lines.push(l) });
    try {
      expect(routing.router.dnsmasq?.pid).toBeGreaterThan(0);
      const result = await rollout({ app, nginx: nginx.settings, dns: settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'prod' });
      expect(await fetchText(app.listen)).toBe('200 v1');
      expect(await resolveHost(settings.server, dnsNames.host(app.name, settings.domain))).toEqual(answerOf(result.containers));
      expect(await readFile(`${workdir.path}/dns/hosts/${app.name}`, 'utf8')).toContain(`${app.name}.${settings.domain}`);
      expect(lines.join('\n')).toMatch(/dnsmasq answering on 127\.0\.0\.1:\d+/);
      expect(lines.join('\n')).toMatch(/registrar: serving /);
    } finally {
      await routing.close();
      workdir.remove();
    }
    await expect(resolveHost(settings.server, dnsNames.host(app.name, settings.domain))).rejects.toMatchObject({ service: 'dns' });
  });
});
