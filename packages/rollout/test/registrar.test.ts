import { connect, createServer, type AddressInfo } from 'node:net';
import Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { dnsNames, resolveHost } from '@slipway/router/dns';
import { etcdKeys } from '@slipway/etcd/keys';
import { ownNginx, uniqueLoopbackNet } from '@slipway/devstack/testing';
import type { RegistrationChange } from '../src/dns/registrar.js';
import { rollout } from '../src/rollout.js';
import { answerOf, buildImage, docker, etcdRelay, ownDns, serveDns, testApp, useRolloutWorld, type RolloutWorld } from './fixtures.js';

/** Polls until `probe` holds; the time it took. */
async function within(ms: number, probe: () => Promise<boolean>, what: string): Promise<number> {
  const started = Date.now();
  while (!(await probe())) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - started;
}

describe('the registrar (routing: dns): Docker events → etcd keys on leases', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let dns: Awaited<ReturnType<typeof ownDns>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd, dns } = w as Required<RolloutWorld>), { dns: true });
  const keys = async (prefix: string) => Object.fromEntries((await etcd.getAll().prefix(`${prefix}/`).exec()).kvs
    .map((kv) => [kv.key.toString().slice(prefix.length + 1), { address: kv.value.toString(), lease: String(kv.lease) }]));
  const answer = (app: string) => resolveHost(dns.settings.server, dnsNames.host(app, dns.settings.domain));

  it('on start, reconciles etcd with what runs: stale keys go, live containers are registered (probed) or taken over, others never', async () => {
    const app = await testApp({ routing: 'dns' });
    const image = await buildImage(app.name, 'v1');
    const first = await serveDns(dns, [app]);
    const result = await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image, sha: null, job: 'live' });
    await first.close();
    const [a, b] = result.containers.map((c) => ({ address: c.address, id12: c.id.slice(0, 12) })) as Array<{ id12: string; address: string }> as [{ id12: string; address: string }, { id12: string; address: string }];

    // While no registrar ran: a key lost, a stale one written by hand, a healthy container of another release started.
    await etcd.delete().key(`${app.etcd_prefix}/${a.id12}`);
    const elsewhere = uniqueLoopbackNet().replace(/0\/24$/, '');
    await etcd.put(`${app.etcd_prefix}/deadbeef0000`).value(`${elsewhere}250:8080`);
    const other = await docker.createContainer({
      Image: image, Labels: { 'slipway.app': app.name, 'slipway.release': 'not-live' },
      HostConfig: { PortBindings: { '8080/tcp': [{ HostIp: `${elsewhere}251`, HostPort: '8080' }] } },
    });
    await other.start();
    const before = await keys(app.etcd_prefix);

    const changes: RegistrationChange[] = [];
    const again = await serveDns(dns, [app], { onChange: (c) => changes.push(c) });
    try {
      await again.registrar.reconcile();
      const after = await keys(app.etcd_prefix);
      expect(Object.keys(after).sort()).toEqual([a.id12, b.id12].sort());
      expect(after[a.id12]!.address).toBe(a.address);
      expect(after[b.id12]!.lease, 'b taken over on a lease of the new registrar').not.toBe(before[b.id12]!.lease);
      expect(changes.map((c) => `${c.action} ${c.key.split('/').pop()}`).sort()).toEqual([`adopted ${b.id12}`, 'removed deadbeef0000', `registered ${a.id12}`].sort());
      expect(changes.find((c) => c.action === 'removed')!.why).toBe('its container does not exist');
      expect(again.registrar.serving()).toEqual([app.name]);
      expect(await etcd.get(etcdKeys.registrar(app.name)).string()).toMatch(/"pid":\d+/);
    } finally {
      await again.close();
      await other.remove({ force: true });
    }
  });

  it('follows Docker\'s events: a stopped container is removed at once, started again it is registered once healthy', async () => {
    const app = await testApp({ routing: 'dns', health: { timeout_s: 20, interval_ms: 50 } });
    const changes: RegistrationChange[] = [];
    const serving = await serveDns(dns, [app], { onChange: (c) => changes.push(c) });
    try {
      const result = await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1', 'slow-start'), sha: null, job: 'ev' });
      const victim = result.containers[0]!;
      const id12 = victim.id.slice(0, 12);
      const ip = victim.address.split(':')[0]!;

      // Watched while Docker stops it: the engine answers only once the container is down.
      const stopping = docker.getContainer(victim.id).stop({ t: 1 });
      const removedMs = await within(3000, async () => !(id12 in (await keys(app.etcd_prefix))), 'the key removed');
      await stopping;
      await within(5000, async () => !(await answer(app.name)).includes(ip), 'out of DNS (the feed follows the key)');
      expect(changes.some((c) => c.action === 'removed' && c.key.endsWith(id12))).toBe(true);

      // The sample app takes 2 s to answer (slow-start): not registered before its probe passes.
      await docker.getContainer(victim.id).start();
      const registeredMs = await within(10_000, async () => (await keys(app.etcd_prefix))[id12]?.address === victim.address, 'registered again');
      expect(registeredMs).toBeGreaterThanOrEqual(1500);
      await within(5000, async () => (await answer(app.name)).includes(ip), 'answered in DNS again');
      console.log(`registrar: key removed ${removedMs} ms after \`docker stop\` was sent (SIGTERM, the app exits at once); re-registered ${registeredMs} ms after \`docker start\` (app start-up 2 s)`);
    } finally {
      await serving.close();
    }
  });

  it('a registered container that stops answering its probe is taken out of DNS after health.timeout_s, and back once it answers; the last ones are kept', async () => {
    const app = await testApp({ routing: 'dns', health: { timeout_s: 2, interval_ms: 50 } });
    const changes: RegistrationChange[] = [];
    const serving = await serveDns(dns, [app], { onChange: (c) => changes.push(c) });
    const healthz = async (id: string, verb: 'break' | 'mend') => {
      const exec = await docker.getContainer(id).exec({ Cmd: verb === 'break' ? ['rm', '-f', '/www/healthz'] : ['sh', '-c', 'echo ok > /www/healthz'] });
      const stream = await exec.start({});
      await new Promise((resolve) => stream.on('end', resolve).resume());
    };
    try {
      const result = await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'probe' });
      const [sick, well] = result.containers as [typeof result.containers[0], typeof result.containers[0]];
      const [sickId, wellId] = [sick.id.slice(0, 12), well.id.slice(0, 12)];
      await within(5000, async () => Object.keys(await keys(app.etcd_prefix)).length === 2 && (await serving.registrar.reconcile(), true), 'both registered');

      await healthz(sick.id, 'break');
      const outMs = await within(15_000, async () => !(sickId in (await keys(app.etcd_prefix))), 'the failing container out of etcd');
      expect(outMs).toBeGreaterThanOrEqual(1500);
      // Told once etcd has answered the transaction, which a read may see first.
      await within(5000, async () => changes.some((c) => c.action === 'removed' && c.key.endsWith(sickId)), 'the removal told');
      expect(changes.find((c) => c.action === 'removed' && c.key.endsWith(sickId))?.why).toMatch(/has not answered 2xx on \/healthz for 2 s \(last: HTTP 404\)/);
      await within(3000, async () => !(await answer(app.name)).includes(sick.address.split(':')[0]!), 'out of DNS');
      expect(wellId in (await keys(app.etcd_prefix))).toBe(true);

      // The last one is kept however long it fails: a name with no address serves no one.
      await healthz(well.id, 'break');
      await new Promise((r) => setTimeout(r, 8000));
      expect(Object.keys(await keys(app.etcd_prefix))).toEqual([wellId]);

      await healthz(sick.id, 'mend');
      await within(15_000, async () => (await keys(app.etcd_prefix))[sickId]?.address === sick.address, 'registered again once it answers');
      // With one answering, the other that still fails goes.
      await within(15_000, async () => !(wellId in (await keys(app.etcd_prefix))), 'the other, failing, taken out');
    } finally {
      await serving.close();
    }
  });

  it('keys live on leases: a standby takes over before they expire; with no registrar left they drop out within the TTL', async () => {
    const app = await testApp({ routing: 'dns' });
    // etcd raises any lease under its minimum TTL (~2 s here) to it, so the claim lives ~2 s
    // after a crash; keys get room beyond that for the take-over on a loaded machine.
    const ttl = { ttlS: 6, sessionTtlS: 1 };
    const [relayOne, relayTwo] = [await etcdRelay(), await etcdRelay()];
    const one = await serveDns(dns, [app], { ...ttl, etcd: relayOne.client });
    const result = await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'lease' });
    const two = await serveDns(dns, [app], { ...ttl, etcd: relayTwo.client });
    const deletes: number[] = [];
    const watcher = await etcd.watch().prefix(`${app.etcd_prefix}/`).create();
    watcher.on('delete', () => deletes.push(Date.now()));
    try {
      expect(two.registrar.serving(), 'a standby while the first one serves').toEqual([]);
      const held = await keys(app.etcd_prefix);

      // The first registrar "crashes": its etcd connections are reset, nothing is revoked.
      const crashed = Date.now();
      relayOne.cut();
      const takeoverMs = await within(ttl.ttlS * 1000, async () => two.registrar.serving().length === 1, 'the standby taking over');
      await within(2000, async () => Object.values(await keys(app.etcd_prefix)).every((k, i) => k.lease !== Object.values(held)[i]!.lease), 'keys adopted');
      await new Promise((r) => setTimeout(r, ttl.ttlS * 1000));
      expect(deletes, 'no key vanished during the take-over').toEqual([]);
      expect(Object.keys(await keys(app.etcd_prefix)).sort()).toEqual(result.containers.map((c) => c.id.slice(0, 12)).sort());

      // Now the only registrar dies: the keys expire by themselves; DNS keeps its last answer rather than go empty.
      const died = Date.now();
      relayTwo.cut();
      const goneMs = await within(ttl.ttlS * 1000 + 1500, async () => Object.keys(await keys(app.etcd_prefix)).length === 0, 'keys expiring');
      console.log(`registrar: standby took over ${takeoverMs} ms after the first one's etcd connection died (session TTL ${ttl.sessionTtlS} s), before any key expired; `
        + `with no registrar the keys dropped out ${goneMs} ms after (TTL ${ttl.ttlS} s)`);
      expect(Date.now() - died).toBeLessThanOrEqual(ttl.ttlS * 1000 + 1500);
      // Each key is on a lease of its own: they drop out one by one (on a loaded machine more than the feed's
      // debounce apart), and DNS keeps the answer it had before the last one went: never empty, only the app's.
      const last = await answer(app.name);
      expect(last.length).toBeGreaterThan(0);
      expect(answerOf(result.containers)).toEqual(expect.arrayContaining(last));
      expect(crashed).toBeLessThan(died);
    } finally {
      await watcher.cancel();
      await one.close();
      await two.close();
      relayOne.client.close();
      relayTwo.client.close();
    }
  });
  it('a key whose address is wrong (written by hand) is put right, its container probed again', async () => {
    const app = await testApp({ routing: 'dns' });
    const served = await serveDns(dns, [app]);
    try {
      const result = await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'wrong-key' });
      const [first] = result.containers;
      const key = etcdKeys.upstream(app.etcd_prefix, first!.id.slice(0, 12));
      await etcd.put(key).value('127.9.9.9:1');
      await served.registrar.reconcile(app.name);
      await within(5_000, async () => (await etcd.get(key).string()) === first!.address, 'the key put right');
    } finally {
      await served.close();
    }
  });

  it('a release record it cannot read (written by hand, or by a newer Slipway) leaves the keys as they are, rather than taking every one out', async () => {
    const app = await testApp({ routing: 'dns' });
    const served = await serveDns(dns, [app]);
    try {
      await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'unreadable' });
      await served.registrar.reconcile(app.name);
      const keys = async () => Object.keys(await etcd.getAll().prefix(`${app.etcd_prefix}/`).strings()).sort();
      const before = await keys();
      expect(before).toHaveLength(app.replicas);
      const record = await etcd.get(etcdKeys.release(app.name)).string();
      await etcd.put(etcdKeys.release(app.name)).value(JSON.stringify({ ...JSON.parse(record!), sha: 'f'.repeat(64) }));
      await served.registrar.reconcile(app.name);
      await new Promise((r) => setTimeout(r, 500));
      expect(await keys()).toEqual(before);
    } finally {
      await served.close();
    }
  });

  it('a reconcile held up (Docker slow to answer) does not let the live keys expire: they are renewed each tick all the same', async () => {
    const app = await testApp({ routing: 'dns' });
    // Docker through a relay that can hold each of its answers back: listing containers then takes longer than a tick.
    let delayMs = 0;
    const relay = createServer((client) => {
      const engine = connect('/var/run/docker.sock');
      let order = Promise.resolve();
      client.on('data', (chunk: Buffer) => engine.write(chunk));
      engine.on('data', (chunk: Buffer) => {
        const wait = delayMs;
        order = order.then(() => (wait > 0 ? new Promise((r) => setTimeout(r, wait)) : undefined)).then(() => void client.write(chunk));
      });
      for (const [a, b] of [[client, engine], [engine, client]] as const) {
        a.on('error', () => b.destroy());
        a.on('close', () => b.destroy());
      }
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const slowDocker = new Docker({ host: '127.0.0.1', port: (relay.address() as AddressInfo).port, protocol: 'http' });
    const served = await serveDns(dns, [app], { ttlS: 3, sessionTtlS: 1, docker: slowDocker });
    const deletes: string[] = [];
    const watcher = await etcd.watch().prefix(`${app.etcd_prefix}/`).create();
    watcher.on('delete', (kv) => deletes.push(kv.key.toString()));
    try {
      const result = await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'slow-docker' });
      const live = result.containers.map((c) => c.id.slice(0, 12)).sort();
      expect(Object.keys(await keys(app.etcd_prefix)).sort()).toEqual(live);
      // Each answer of Docker 2.5 s late, for three TTLs: every reconcile runs past the 1 s tick, and the next asks for another.
      delayMs = 2_500;
      void served.registrar.reconcile(app.name).catch(() => {});
      await new Promise((r) => setTimeout(r, 9_000));
      expect(deletes, 'no live key expired').toEqual([]);
      expect(Object.keys(await keys(app.etcd_prefix)).sort()).toEqual(live);
    } finally {
      delayMs = 0;
      await watcher.cancel();
      await served.close();
      relay.close();
    }
  });

  it('a registration the etcd3 client sent again (its answer lost after etcd made it) stands: its keys are not revoked with the leases', async () => {
    const app = await testApp({ routing: 'dns' });
    const first = await serveDns(dns, [app]);
    const result = await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'again' });
    await first.close();
    const id12 = result.containers[0]!.id.slice(0, 12);
    await etcd.delete().key(`${app.etcd_prefix}/${id12}`);
    const relay = await etcdRelay();
    relay.resetAnswers(`${app.etcd_prefix}/${id12}`, 1);
    const changes: RegistrationChange[] = [];
    const deleted: string[] = [];
    const watcher = await etcd.watch().prefix(`${app.etcd_prefix}/`).create();
    watcher.on('delete', (kv) => deleted.push(kv.key.toString()));
    const again = await serveDns(dns, [app], { etcd: relay.client, onChange: (c) => changes.push(c) });
    try {
      await again.registrar.reconcile();
      expect(changes.filter((c) => c.key.endsWith(id12)).map((c) => c.action)).toEqual(['registered']);
      await new Promise((r) => setTimeout(r, 500));
      expect(deleted, 'registered once, never taken away').toEqual([]);
      expect(Object.keys(await keys(app.etcd_prefix)).sort()).toEqual(result.containers.map((c) => c.id.slice(0, 12)).sort());
    } finally {
      await watcher.cancel();
      await again.close();
      relay.client.close();
      relay.cut();
    }
  });
});
