import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { ownNginx, testStack, uniqueName, waitFor } from '@slipway/devstack/testing';
import { spawn } from 'node:child_process';
import { runCommand } from '@slipway/core/run-command';
import { acquireAppLock, LOCK_TTL_S } from '../src/app-lock.js';
import { etcdKeys } from '@slipway/etcd/keys';
import { rollout } from '../src/rollout.js';
import { buildImage, docker, etcdRelay, fetchText, stackEtcd, testApp, useRolloutWorld } from './fixtures.js';

describe('one rollout per app at a time', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd } = w));

  it('serialises two rollouts of the same app, whichever worker runs them', async () => {
    const app = await testApp({ replicas: 1 });
    const [v1, v2] = await Promise.all(['v1', 'v2'].map((v) => buildImage(app.name, v)));
    const events: string[] = [];
    const lines: string[] = [];
    // Two clients: as two workers would have.
    const other = stackEtcd();
    const run = (client: Etcd3, image: string, job: string) => rollout({
      app, nginx: nginx.settings, docker, etcd: client, image, sha: null, job,
      onStep: (s) => events.push(`${job}:${s}`), log: (l) => lines.push(`${job}: ${l}`),
    });
    const first = run(etcd, v1!, 'one');
    // The second starts once the first holds the lock (a fixed head start loses the race on a busy machine).
    while ((await etcd.get(etcdKeys.lock(app.name)).string()) === null) await new Promise((r) => setTimeout(r, 5));
    await Promise.all([first, run(other, v2!, 'two')]);
    other.close();
    expect(events.slice(0, 5)).toEqual(['one:start', 'one:health', 'one:switch', 'one:drain', 'one:done']);
    expect(events.slice(5)).toEqual(['two:start', 'two:health', 'two:switch', 'two:drain', 'two:done']);
    expect(lines.join('\n')).toMatch(/two: waiting for the rollout lock of .*: held by \{"job":"one"/);
    expect(await fetchText(app.listen)).toBe('200 v2');
  });

  it(`a crashed holder frees the lock by itself within the lease TTL (${LOCK_TTL_S} s); other apps are not held up meanwhile`, async () => {
    const [app, other] = [await testApp({ replicas: 1 }), await testApp({ replicas: 1 })];
    // Images first: the lease runs out 5 s after the holder dies, and the wait must be seen.
    const [image, otherImage] = await Promise.all([buildImage(app.name, 'v1'), buildImage(other.name, 'v1')]);
    // A holder in another process, killed: its lease is no longer kept alive, nothing revokes it.
    const url = testStack().etcd!.url;
    const env = { ...process.env, ETCDCTL_API: '3' };
    const grant = await runCommand(['etcdctl', '--endpoints', url, 'lease', 'grant', String(LOCK_TTL_S)], { env });
    const lease = /lease ([0-9a-f]+) granted/.exec(grant.stdout)![1]!;
    await runCommand(['etcdctl', '--endpoints', url, 'put', `--lease=${lease}`, etcdKeys.lock(app.name), '{"job":"crashed-worker"}'], { env });
    const keeper = spawn('etcdctl', ['--endpoints', url, 'lease', 'keep-alive', lease], { env, stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1000));
    keeper.kill('SIGKILL');

    const started = Date.now();
    const lines: string[] = [];
    const next = rollout({ app, nginx: nginx.settings, docker, etcd, image, sha: null, job: 'next', log: (l) => lines.push(l) });
    next.catch(() => {}); // awaited below, after the other app's rollout
    // Meanwhile another app's rollout goes through without waiting for that lock.
    await rollout({ app: other, nginx: nginx.settings, docker, etcd, image: otherImage, sha: null, job: 'other' });
    expect(Date.now() - started).toBeLessThan(LOCK_TTL_S * 1000);
    await next;
    const waited = Number(/got the rollout lock of .* after (\d+\.\d) s/.exec(lines.join('\n'))?.[1]);
    console.log(`lock: a crashed holder's lock was taken over after ${waited} s (TTL ${LOCK_TTL_S} s); whole rollout ${Date.now() - started} ms`);
    expect(waited).toBeGreaterThan(0);
    expect(waited).toBeLessThan(LOCK_TTL_S + 2);
    expect(await fetchText(app.listen)).toBe('200 v1');
  });

  it('a holder cut off from etcd takes its lock as lost once a TTL has passed, when etcd frees it, not at twice the TTL as the client says', async () => {
    const relay = await etcdRelay();
    const app = uniqueName('lostlock');
    const lock = await acquireAppLock(relay.client, app, { job: 'cut-off', ttlS: 2 });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      expect(lock.lost, 'kept alive').toBe(false);
      relay.cut();
      const cutAt = Date.now();
      await waitFor('the lock taken as lost', () => lock.lost, { timeoutMs: 10_000, intervalMs: 50 });
      const after = Date.now() - cutAt;
      console.log(`lock: taken as lost ${after} ms after the cut (TTL 2 s)`);
      expect(after).toBeLessThan(3_000);
      // etcd freed it too: another holder takes it.
      const next = await acquireAppLock(etcd, app, { job: 'next', ttlS: 2, waitMs: 5_000 });
      await next.release();
    } finally {
      await lock.release();
      relay.client.close();
    }
  });
});
