import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { connectionCounts, listenerHolders } from '@slipway/router/nginx';
import { dnsNames, resolveHost, RESOLVER_CACHE_MS } from '@slipway/router/dns';
import { ownNginx } from '@slipway/devstack/testing';
import { REGISTRATION_TTL_S } from '../src/dns/plan-registration.js';
import { rollout } from '../src/rollout.js';
import { buildImage, docker, fetchText, ownDns, serveDns, testApp, useRolloutWorld, type RolloutWorld } from './fixtures.js';
import { startLoad, wrongVersions, type Sample } from './load.js';

const ROLLOUTS = 10;
const KEEP_ALIVE_LOOPS = 4;
const CLOSE_LOOPS = 2;

/** nginx's own pids: the master and the workers holding the app's listening socket. A reload replaces every worker. */
async function nginxProcesses(listen: string): Promise<{ master: number | null; workers: number[] }> {
  const holders = await listenerHolders(listen);
  return { master: holders?.master ?? null, workers: [...(holders?.workers ?? [])].sort() };
}

describe('routing: dns — invariant 1 without a single nginx reload', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let dns: Awaited<ReturnType<typeof ownDns>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd, dns } = w as Required<RolloutWorld>), { dns: true });

  it(`${ROLLOUTS} consecutive rollouts of 2 replicas under keep-alive load: no non-2xx, no socket error, nginx's workers never replaced`, async () => {
    const app = await testApp({ routing: 'dns', replicas: 2, drain_s: 5, stop_timeout_s: 5 });
    const images: string[] = [];
    for (let i = 1; i <= ROLLOUTS + 1; i++) images.push(await buildImage(app.name, `v${i}`));
    const serving = await serveDns(dns, [app]);
    try {
      const base = { app, nginx: nginx.settings, dns: dns.settings, docker, etcd, sha: null };
      await rollout({ ...base, image: images[0]!, job: 'r0' });
      expect(await fetchText(app.listen)).toBe('200 v1');
      const before = await nginxProcesses(app.listen);
      expect(before.workers.length).toBeGreaterThan(0);

      const load = startLoad({ listen: app.listen, keepAlive: KEEP_ALIVE_LOOPS, close: CLOSE_LOOPS, paths: ['/', '/cgi-bin/slow'] });
      await new Promise((r) => setTimeout(r, 1500));
      const windows: Array<{ start: number; end: number; switchMs: number; drainMs: number; settleMs: number }> = [];
      for (let k = 1; k <= ROLLOUTS; k++) {
        const start = Date.now();
        const result = await rollout({ ...base, image: images[k]!, job: `r${k}` });
        windows.push({ start, end: Date.now(), switchMs: result.timings.switch, drainMs: result.timings.drain, settleMs: result.drain?.settleMs ?? 0 });
        expect(result.drain?.drained, `rollout ${k} drained by observation: ${JSON.stringify(result.drain)}`).toBe(true);
      }
      await new Promise((r) => setTimeout(r, 1500));
      const samples = await load.stop();
      const after = await nginxProcesses(app.listen);

      const wrongVersion = wrongVersions(samples, windows);
      const non2xx = samples.filter((s) => s.status !== undefined && (s.status < 200 || s.status > 299));
      const errors = samples.filter((s) => s.error);
      const byKind = (kind: Sample['kind']) => samples.filter((s) => s.kind === kind).length;
      console.log([
        `dns zero-downtime: ${samples.length} requests (${byKind('keep-alive')} keep-alive, ${byKind('close')} connection-close) over ${ROLLOUTS} rollouts`,
        `  non-2xx: ${non2xx.length}; socket errors: ${errors.length} (${[...new Set(errors.map((s) => `${s.kind} ${s.error}`))].join(', ') || 'none'}); wrong version: ${wrongVersion.length}`,
        `  nginx master ${before.master} workers ${before.workers.join(' ')} before, ${after.master} / ${after.workers.join(' ')} after`,
        `  switch (ms): ${windows.map((w) => w.switchMs).join(' ')}; drain incl. ${windows[0]?.settleMs} ms resolver cache (ms): ${windows.map((w) => w.drainMs).join(' ')}; rollouts (ms): ${windows.map((w) => w.end - w.start).join(' ')}`,
      ].join('\n'));

      expect(non2xx.map((s) => `${s.status} ${s.path}`)).toEqual([]);
      expect(errors.map((s) => `${s.kind} ${s.error} ${s.path}`)).toEqual([]);
      expect(wrongVersion.map((s) => s.body)).toEqual([]);
      expect(after, 'nginx was not reloaded: same master, same workers').toEqual(before);
      expect(samples.filter((s) => s.path === '/cgi-bin/slow' && s.status === 200).length).toBeGreaterThan(ROLLOUTS);
      expect(await fetchText(app.listen)).toBe(`200 v${ROLLOUTS + 1}`);
    } finally {
      await serving.close();
    }
  });

  it('a killed container stops receiving traffic within the TTL; the load sees no error beyond the requests in flight on it', async () => {
    const app = await testApp({ routing: 'dns', replicas: 2 });
    const removed: number[] = [];
    const serving = await serveDns(dns, [app], { onChange: (c) => c.action === 'removed' && removed.push(c.at) });
    try {
      const first = await rollout({ app, nginx: nginx.settings, dns: dns.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'k1' });
      const [victim, survivor] = first.containers as [typeof first.containers[0], typeof first.containers[0]];
      const victimIp = victim.address.split(':')[0]!;
      const load = startLoad({ listen: app.listen, keepAlive: KEEP_ALIVE_LOOPS, close: CLOSE_LOOPS, paths: ['/cgi-bin/host', '/cgi-bin/slow'] });
      await new Promise((r) => setTimeout(r, 1500));

      // Each proxied request is a connection of its own (no upstream keep-alive in dns mode): connections = requests in flight.
      const inFlight = (await connectionCounts([victim.address])).get(victim.address) ?? 0;
      const killedAt = Date.now();
      // Not awaited before watching DNS: the engine answers a SIGKILL only once the container is down and its network torn down.
      const killing = docker.getContainer(victim.id).kill();
      let dnsDropMs = -1;
      while (Date.now() - killedAt < REGISTRATION_TTL_S * 1000) {
        if (!(await resolveHost(dns.settings.server, dnsNames.host(app.name, dns.settings.domain))).includes(victimIp)) {
          dnsDropMs = Date.now() - killedAt;
          break;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      await killing;
      await new Promise((r) => setTimeout(r, RESOLVER_CACHE_MS + 1500));
      const samples = await load.stop();
      // `docker kill` returns once the signal is sent; the container is dead when Docker says it finished.
      const diedAt = Date.parse((await docker.getContainer(victim.id).inspect()).State.FinishedAt);

      // nginx logs every attempt on the dead address (connection refused; the request itself goes on to the survivor).
      const errorLog = await readFile(join(nginx.service.prefix, 'error.log'), 'utf8');
      const attempts = errorLog.split('\n').filter((l) => l.includes(`upstream: "http://${victim.address}`))
        .map((l) => new Date(l.slice(0, 19).replaceAll('/', '-').replace(' ', 'T')).getTime());
      const lastAttemptS = attempts.length ? Math.max(...attempts) / 1000 : null;
      const failures = samples.filter((s) => s.error || (s.status !== undefined && (s.status < 200 || s.status > 299)));
      const afterKill = samples.filter((s) => s.start > diedAt);
      const servedBy = (s: Sample) => s.path === '/cgi-bin/host' ? s.body : undefined;
      console.log([
        `dns kill: ${samples.length} requests (${afterKill.length} started after it died); ${inFlight} in flight on ${victim.address} at the kill`,
        `  died ${diedAt - killedAt} ms after \`docker kill\` was sent; key removed by the registrar ${removed[0] ? removed[0] - killedAt : '?'} ms after it; `
          + `DNS record gone ${dnsDropMs} ms after it (on Docker's die event; lease TTL ${REGISTRATION_TTL_S} s as the fallback)`,
        `  nginx tried the dead address ${attempts.length} time${attempts.length === 1 ? '' : 's'} (each passed on to the survivor), the last ${lastAttemptS === null ? 'never' : `logged ${lastAttemptS - Math.floor(killedAt / 1000)} s after the kill's second (the log counts whole seconds)`}`,
        `  failed requests: ${failures.length} (${failures.map((s) => `${s.kind} ${s.path} ${s.error ?? s.status}`).join(', ') || 'none'})`,
      ].join('\n'));

      expect(dnsDropMs, 'the killed container left DNS').toBeGreaterThanOrEqual(0);
      // Docker's die event, not the lease TTL (10 s): ~120 ms on a quiet machine, 1.1 s seen under the whole suite.
      expect(dnsDropMs).toBeLessThan(2500);
      // No attempt on it once nginx's cached answer (at most RESOLVER_CACHE_MS old) expired; the log counts whole seconds.
      if (lastAttemptS !== null) expect(lastAttemptS * 1000).toBeLessThanOrEqual(killedAt + dnsDropMs + RESOLVER_CACHE_MS + 1000);
      expect(failures.length).toBeLessThanOrEqual(inFlight);
      expect(afterKill.filter((s) => servedBy(s) === victim.id.slice(0, 12))).toEqual([]);
      expect(afterKill.filter((s) => servedBy(s) === survivor.id.slice(0, 12)).length).toBeGreaterThan(0);
      expect((await etcd.getAll().prefix(`${app.etcd_prefix}/`).keys())).toEqual([`${app.etcd_prefix}/${survivor.id.slice(0, 12)}`]);
    } finally {
      await serving.close();
    }
  });
});
