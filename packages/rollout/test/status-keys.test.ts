import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { etcdKeys, MAX_TXN_OPS, readAppsKeys, readUpstreams } from '@slipway/etcd/keys';
import { currentRelease } from '../src/release-store.js';
import { stackEtcd } from './fixtures.js';

/** readAppsKeys: what a status of many apps reads from etcd, in a few transactions instead of two requests per app. */
describe('readAppsKeys', () => {
  const etcd = stackEtcd();
  const run = `t${randomBytes(3).toString('hex')}`;
  const root = `/slipway-test/${run}`;
  // More apps than one transaction may read (two reads each), so the answer spans several.
  const apps = Array.from({ length: MAX_TXN_OPS / 2 + 6 }, (_, n) => ({ name: `${run}-${n}`, prefix: `${root}/${n}` }));
  afterAll(async () => {
    await etcd.delete().prefix(`${root}/`);
    await Promise.all(apps.map((app) => etcd.delete().key(etcdKeys.release(app.name))));
    etcd.close();
  });

  it('answers for every app what reading its keys alone answers, each app only its own', async () => {
    for (const [n, app] of apps.entries()) {
      if (n % 3 === 0) continue; // no keys, no release
      await etcd.put(etcdKeys.upstream(app.prefix, `${'a'.repeat(11)}${n % 10}`)).value(`127.0.${n}.1:8080`);
      await etcd.put(`${app.prefix}/${'b'.repeat(12)}`).value(' 127.0.0.2:8080 ');
      if (n % 5 === 0) await etcd.put(`${app.prefix}/${'c'.repeat(12)}`).value('127.0.0.3:80; }');
      if (n % 2 === 0) await etcd.put(etcdKeys.release(app.name)).value(JSON.stringify({ sha: null, image: `img:${n}`, job: String(n), at: new Date(0).toISOString() }));
    }
    // app 1's prefix is a prefix of app 10's name: `${prefix}/` keeps them apart.
    const read = await readAppsKeys(etcd, apps);
    expect([...read.keys()]).toEqual(apps.map((a) => a.name));
    for (const app of apps) {
      const alone = { upstreams: await readUpstreams(etcd, app.prefix), release: await currentRelease(etcd, app.name) };
      const got = read.get(app.name)!;
      expect({ upstreams: got.upstreams, release: got.release === null ? null : JSON.parse(got.release) as unknown }).toEqual(alone);
    }
    expect(read.get(apps[1]!.name)!.upstreams.live.map((u) => u.address)).toEqual(['127.0.1.1:8080', '127.0.0.2:8080']);
    expect(read.get(apps[5]!.name)!.upstreams.invalid.map((u) => u.id)).toEqual(['c'.repeat(12)]);
    expect(read.get(apps[3]!.name)).toEqual({ upstreams: { live: [], invalid: [] }, release: null });
  });
});
