import { describe, expect, it } from 'vitest';
import { testAppName } from '@slipway/devstack/testing';
import { EtcdReleaseStore, rollbackTarget, type ReleaseRecord } from '../src/release-store.js';
import { releaseStoreWorld } from './fixtures.js';

describe('release history in etcd', () => {
  const { etcd, apps } = releaseStoreWorld();
  const world = () => {
    const app = testAppName();
    apps.push(app);
    const record = (job: string, at: number): ReleaseRecord => ({ sha: null, image: `${app}:${job}`, job, at: new Date(at).toISOString() });
    return { app, store: new EtcdReleaseStore(etcd), record };
  };

  it('is kept in the order etcd wrote it, not by the switching worker\'s clock: one behind keeps its live release, and rollback goes to the one before', async () => {
    const { app, store, record } = world();
    const now = Date.now();
    // b's worker runs an hour behind the others.
    const releases = [record('a', now - 3000), record('b', now - 3_600_000), record('c', now - 1000)];
    for (const release of releases.slice(0, 2)) {
      const lock = await store.lock(app, { job: release.job });
      await store.switchRelease({ app, remove: [], add: { [`/test/${app}/${release.job.repeat(12)}`]: '127.0.0.1:20001' }, release, lock });
      await lock.release();
      await store.pruneReleases(app, 2);
    }
    expect((await store.listReleases(app)).map((r) => r.job)).toEqual(['b', 'a']);
    expect(rollbackTarget(await store.listReleases(app), await store.currentRelease(app)).job).toBe('a');
    const lock = await store.lock(app, { job: 'c' });
    const receipt = await store.switchRelease({ app, remove: [], add: {}, release: releases[2]!, lock });
    await lock.release();
    expect(receipt.previousRelease).toBe(JSON.stringify(releases[1]));
    await store.pruneReleases(app, 2);
    expect((await store.listReleases(app)).map((r) => r.job)).toEqual(['c', 'b']);
  });

  it('a revert by a rollout that lost its lock puts nothing back, while another holds it (it planned from the switched keys) or after (it may have removed the previous release\'s containers)', async () => {
    const { app, store, record } = world();
    const [a, b] = [record('a', Date.now() - 1000), record('b', Date.now())];
    const [keyA, keyB] = [`/test/${app}/aaaaaaaaaaaa`, `/test/${app}/bbbbbbbbbbbb`];
    const first = await store.lock(app, { job: 'a' });
    await store.switchRelease({ app, remove: [], add: { [keyA]: '127.0.0.1:20001' }, release: a, lock: first });
    const receipt = await store.switchRelease({ app, remove: [{ key: keyA, id: 'aaaaaaaaaaaa', address: '127.0.0.1:20001' }], add: { [keyB]: '127.0.0.1:20002' }, release: b, lock: first });
    await first.release();
    const other = await store.lock(app, { job: 'other' });
    try {
      expect(await store.revertSwitch(receipt)).toBe(false);
      expect(Object.keys(await etcd.getAll().prefix(`/test/${app}/`).strings())).toEqual([keyB]);
      expect(await store.currentRelease(app)).toEqual(b);
    } finally {
      await other.release();
    }
    // Nor once the other let go: it may have removed the previous release's containers as strays meanwhile.
    expect(await store.revertSwitch(receipt)).toBe(false);
    expect(Object.keys(await etcd.getAll().prefix(`/test/${app}/`).strings())).toEqual([keyB]);
  });
});
