import { readFile } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import type { AppConfig } from '@slipway/config/types';
import { dnsNames, resolveHost } from '@slipway/router/dns';
import { listenerHolders, nginxNames } from '@slipway/router/nginx';
import { etcdKeys } from '@slipway/etcd/keys';
import { ownNginx } from '@slipway/devstack/testing';
import type { RegistrationChange } from '../src/dns/registrar.js';
import { DNS_SWITCH_TIMEOUT_MS } from '../src/route-proxy.js';
import { rollout, type RolloutOptions } from '../src/rollout.js';
import { appContainers, buildImage, deadPort, docker, ownDns, serveDns, testApp, watchServing, useRolloutWorld, type RolloutWorld } from './fixtures.js';

describe('routing: dns — a failed rollout leaves the previous release serving: DNS answer, keys, nginx file and workers as they were, no stray', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let dns: Awaited<ReturnType<typeof ownDns>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd, dns } = w as Required<RolloutWorld>), { dns: true });
  const answer = (app: string) => resolveHost(dns.settings.server, dnsNames.host(app, dns.settings.domain));
  /** Key → address (leases may change hands: the registrar takes restored keys over). */
  const keyMap = async (prefix: string) => etcd.getAll().prefix(`${prefix}/`).strings();

  async function failedAttempt(app: AppConfig, attempt: (base: RolloutOptions, serving: Awaited<ReturnType<typeof serveDns>>) => Promise<unknown>) {
    const changes: RegistrationChange[] = [];
    const serving = await serveDns(dns, [app], { onChange: (c) => changes.push(c) });
    try {
      const base: RolloutOptions = { app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'good' };
      const good = await rollout(base);
      const file = nginxNames.path(nginx.settings.conf_dir, app.name);
      const before = { file: await readFile(file, 'utf8'), keys: await keyMap(app.etcd_prefix), release: await etcd.get(etcdKeys.release(app.name)).string(), answer: await answer(app.name) };
      const workers = (await listenerHolders(app.listen))!.workers;
      const traffic = watchServing(app.listen);
      const started = Date.now();
      const err = await attempt({ ...base, log: () => {} }, serving).then(() => null, (e: unknown) => e) as (Error & { code: string; service?: string }) | null;
      const ms = Date.now() - started;
      const served = await traffic.stop();
      expect(err, 'the attempt should fail').toBeInstanceOf(Error);
      expect(served.answers, `nginx answered during the attempt (${served.count} requests)`).toEqual(['200 v1']);
      expect(await readFile(file, 'utf8')).toBe(before.file);
      expect((await listenerHolders(app.listen))!.workers, 'nginx was not reloaded').toEqual(workers);
      expect(await etcd.get(etcdKeys.release(app.name)).string()).toBe(before.release);
      expect(await keyMap(app.etcd_prefix)).toEqual(before.keys);
      expect(await answer(app.name)).toEqual(before.answer);
      expect((await appContainers(app.name)).map((c) => c.Id).sort()).toEqual(good.containers.map((c) => c.id).sort());
      return { err: err!, ms, serving, good, changes: changes.filter((c) => c.at >= started) };
    } finally {
      await serving.close();
    }
  }

  it('a new container that exits: health_failed; DNS never answered it', async () => {
    const app = await testApp({ routing: 'dns' });
    const crash = await buildImage(app.name, 'v2', 'crash', 'crash');
    const { err } = await failedAttempt(app, (base) => rollout({ ...base, image: crash, job: 'crash' }));
    expect(err.code).toBe('health_failed');
    expect(err.message).toContain('fatal: cannot open database');
  });

  it('the DNS server does not take the switch (its feed is down): unavailable (dns) after DNS_SWITCH_TIMEOUT_MS, the switch reverted and the keys taken back by the registrar', async () => {
    const app = await testApp({ routing: 'dns' });
    const v2 = await buildImage(app.name, 'v2');
    const lines: string[] = [];
    const { err, ms, good, changes } = await failedAttempt(app, async (base, serving) => {
      await serving.feed.close();
      return rollout({ ...base, image: v2, job: 'no-feed', log: (line) => lines.push(line) });
    });
    // Before the new containers go, nginx's workers may still hold their addresses from the switched records: waited out.
    const reverted = lines.findIndex((l) => l.startsWith('draining the new containers before they go'));
    expect(reverted).toBeGreaterThan(-1);
    expect(lines[reverted + 1]).toMatch(/^waited \d\.\d s for nginx's resolver caches, then drained/);
    // The revert put the old keys back on the rollout's lease, which ends with it: the registrar renews them on its own.
    // The old keys were the registrar's before the attempt, so adopting them again can only follow the revert.
    // (It also took the new keys over while they were live, and let them go with the revert.)
    const back = good.containers.map((c) => etcdKeys.upstream(app.etcd_prefix, c.id));
    expect(changes.filter((c) => c.action === 'adopted').map((c) => c.key)).toEqual(expect.arrayContaining(back));
    expect(err).toMatchObject({ code: 'unavailable', service: 'dns' });
    expect(err.message).toMatch(/did not answer .* within 5000 ms of the switch/);
    expect(ms).toBeGreaterThanOrEqual(DNS_SWITCH_TIMEOUT_MS);
  });

  it('the DNS server does not answer at all: unavailable (dns) before anything starts', async () => {
    const app = await testApp({ routing: 'dns' });
    const serving = await serveDns(dns, [app]);
    try {
      const dead = { ...dns.settings, server: `127.0.0.1:${await deadPort()}` };
      const err = await rollout({ app, nginx: nginx.settings, dns: dead, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'x' }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'unavailable', service: 'dns' });
      expect(await appContainers(app.name)).toEqual([]);
      expect(await etcd.get(etcdKeys.release(app.name)).string()).toBeNull();
    } finally {
      await serving.close();
    }
  });

  it('a configuration change whose file check_cmd rejects: nginx_check_failed before DNS changes', async () => {
    const app = await testApp({ routing: 'dns' });
    const v2 = await buildImage(app.name, 'v2');
    const { err } = await failedAttempt(app, (base) => rollout({
      // A check of the candidate file alone ({file}) that says no: the candidate's (a check refusing even the other apps' files is nginx_conf_broken).
      ...base, app: { ...app, server_name: ['changed.example'] }, nginx: { ...nginx.settings, check_cmd: ['sh', '-c', 'exit 1', 'sh', '{file}'] }, image: v2, job: 'bad-check',
    }));
    expect(err.code).toBe('nginx_check_failed');
  });

  it('Docker unreachable: unavailable (docker), nothing changed', async () => {
    const Docker = (await import('dockerode')).default;
    const app = await testApp({ routing: 'dns' });
    const { err } = await failedAttempt(app, (base) => rollout({ ...base, docker: new Docker({ socketPath: '/nonexistent/docker.sock' }), job: 'no-docker' }));
    expect(err).toMatchObject({ code: 'unavailable', service: 'docker' });
  });
});
