import { describe, expect, it } from 'vitest';
import { testAppName } from '@slipway/devstack/testing';
import { etcdKeys } from '@slipway/etcd/keys';
import { EtcdReleaseStore, type ReleaseRecord } from '../src/release-store.js';
import { etcdRelay, releaseStoreWorld } from './fixtures.js';

// etcd applied the call and its answer was lost on the way (a proxy failing, a connection reset): the etcd3 client sends it
// again by itself, or gives up with an error that does not say whether it was applied. Neither may be taken for "not done".
describe('etcd calls whose answer is lost after etcd applied them', () => {
  const { etcd, apps } = releaseStoreWorld();

  /** An app whose release A is live on one upstream key; `next` switches to B, onto another key; `relay` reaches etcd through a proxy. */
  async function world() {
    const app = testAppName();
    apps.push(app);
    const store = new EtcdReleaseStore(etcd);
    const record = (job: string, ago: number): ReleaseRecord => ({ sha: null, image: `${app}:${job}`, job, at: new Date(Date.now() - ago).toISOString() });
    const [a, b] = [record('a', 1_000), record('b', 0)];
    const [keyA, keyB] = [`/test/${app}/aaaaaaaaaaaa`, `/test/${app}/bbbbbbbbbbbb`];
    const lock = await store.lock(app, { job: 'a' });
    await store.switchRelease({ app, remove: [], add: { [keyA]: '127.0.0.1:20001' }, release: a, lock });
    const next = { app, remove: [{ key: keyA, id: 'aaaaaaaaaaaa', address: '127.0.0.1:20001' }], add: { [keyB]: '127.0.0.1:20002' }, release: b, lock };
    const live = async () => Object.keys(await etcd.getAll().prefix(`/test/${app}/`).strings());
    const relay = await etcdRelay();
    const done = async () => {
      relay.client.close();
      relay.cut();
      await lock.release();
    };
    return { app, store, relayed: new EtcdReleaseStore(relay.client), relay, a, keyA, keyB, next, live, done };
  }

  it('a switch sent again by the client records the release the first send replaced, not its own', async () => {
    const { app, relayed, relay, a, keyB, next, live, done } = await world();
    try {
      relay.resetAnswers(etcdKeys.release(app), 1);
      const receipt = await relayed.switchRelease(next);
      expect(receipt.previousRelease).toBe(JSON.stringify(a));
      expect(await live()).toEqual([keyB]);
    } finally {
      await done();
    }
  });

  it('a switch the client gave up on (INTERNAL, not UNAVAILABLE) is confirmed by asking again, not taken for nothing switched', async () => {
    const { app, store, relayed, relay, a, keyB, next, live, done } = await world();
    try {
      relay.resetAnswers(etcdKeys.release(app), 4);
      const receipt = await relayed.switchRelease(next);
      expect(receipt.previousRelease).toBe(JSON.stringify(a));
      expect(await live()).toEqual([keyB]);
      expect(await store.currentRelease(app)).toEqual(next.release);
    } finally {
      await done();
    }
  });

  it('a revert sent again by the client says it put the previous release back', async () => {
    const { app, store, relayed, relay, a, keyA, next, live, done } = await world();
    try {
      const receipt = await store.switchRelease(next);
      relay.resetAnswers(etcdKeys.release(app), 1);
      expect(await relayed.revertSwitch(receipt)).toBe(true);
      expect(await live()).toEqual([keyA]);
      expect(await store.currentRelease(app)).toEqual(a);
    } finally {
      await done();
    }
  });

  it('a lock taken by a call the client sent again is taken, not waited for until it times out', async () => {
    const { app, relayed, relay, done } = await world();
    const key = etcdKeys.lock(`${app}-x`);
    try {
      relay.resetAnswers(key, 1);
      const lock = await relayed.lock(`${app}-x`, { job: 'again', waitMs: 3_000 });
      expect(lock.key).toBe(key);
      expect(await etcd.get(key).string()).toBe(lock.value);
      await lock.release();
    } finally {
      await done();
    }
  });
});
