import { afterAll, describe, expect, it } from 'vitest';
import { testAppName } from '@slipway/devstack/testing';
import { etcdKeys } from '@slipway/etcd/keys';
import { EtcdReleaseStore } from '../src/release-store.js';
import { stackEtcd } from './fixtures.js';

describe('the switch of the largest app the config allows', () => {
  const etcd = stackEtcd();
  const app = testAppName();
  const prefix = `/test/${app}`;
  afterAll(async () => {
    await etcd.delete().prefix(`${prefix}/`);
    await etcd.delete().key(etcdKeys.release(app));
    await etcd.delete().prefix(etcdKeys.releases(app));
    etcd.close();
  });

  it('replaces 64 keys by 64 others in one transaction (2N + 3 operations, past etcd\'s default 128)', async () => {
    const store = new EtcdReleaseStore(etcd);
    const keys = (from: number) => Object.fromEntries(Array.from({ length: 64 }, (_, n) => [`${prefix}/${(from + n).toString(16).padStart(12, '0')}`, `127.0.0.1:${20_000 + from + n}`]));
    const old = keys(0);
    await Promise.all(Object.entries(old).map(([key, address]) => etcd.put(key).value(address)));
    const lock = await store.lock(app, { job: 'size' });
    try {
      const remove = Object.entries(old).map(([key, address]) => ({ key, id: key.split('/').pop()!, address }));
      const receipt = await store.switchRelease({ app, remove, add: keys(100), release: { sha: null, image: 'x', job: 'size', at: new Date().toISOString() }, lock });
      expect(receipt.previousRelease).toBeNull();
      expect(Object.values(await etcd.getAll().prefix(`${prefix}/`).strings()).sort()).toEqual(Object.values(keys(100)).sort());
    } finally {
      await lock.release();
    }
  });
});
