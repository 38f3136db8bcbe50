import type { Etcd3, PutBuilder } from 'etcd3';
import { UnavailableError } from '@slipway/core/slipway-error';
import { etcdCall, etcdDeadline } from '@slipway/etcd/client';
import { etcdKeys, readUpstreams } from '@slipway/etcd/keys';
import { acquireAppLock, acquireLock } from './app-lock.js';
import { parseReleaseRecord, type ReleaseRecord } from './release-record.js';
import type { ReleaseStore, SwitchReceipt } from './release-store.js';

/** Releases kept for rollback (their images are never deleted by Slipway). */
export const RELEASES_KEPT = 10;

const leased = (put: PutBuilder, leaseId: string | undefined) => (leaseId === undefined ? put : put.lease(leaseId));

/** The store seam over etcd (keys: see app-keys.ts and DESIGN.md). */
export function etcdReleaseStore(etcd: Etcd3): ReleaseStore {
  const history = async (app: string) => {
    const values = await etcdCall(`reading the releases of ${app}`, () =>
      etcd.getAll().prefix(etcdKeys.releases(app)).options(etcdDeadline()).strings());
    return Object.entries(values).sort(([a], [b]) => (a < b ? 1 : -1));
  };

  return {
    lock: (app, options) => acquireAppLock(etcd, app, options),

    upstreams: async (prefix) => (await readUpstreams(etcd, prefix)).live,

    currentRelease: async (app) => parseReleaseRecord(await etcdCall(`reading the release of ${app}`, () =>
      etcd.get(etcdKeys.release(app)).options(etcdDeadline()).string())),

    listReleases: async (app) => (await history(app))
      .map(([, text]) => parseReleaseRecord(text))
      .filter((r): r is ReleaseRecord => r !== null),

    async switchRelease(input) {
      const { app, lock } = input;
      const json = JSON.stringify(input.release);
      const historyKey = etcdKeys.releaseEntry(app, new Date(input.release.at));
      const remove = input.remove.filter((u) => !(u.key in input.add));
      const previousRelease = await etcdCall(`reading the release of ${app}`, () => etcd.get(etcdKeys.release(app)).options(etcdDeadline()).string());
      const result = await etcdCall(`switching the upstream keys of ${app}`, () => etcd
        .if(lock.key, 'Value', '==', lock.value)
        .then(
          ...remove.map((u) => etcd.delete().key(u.key)),
          ...Object.entries(input.add).map(([key, address]) => leased(etcd.put(key).value(address), input.leaseId)),
          etcd.put(etcdKeys.release(app)).value(json),
          etcd.put(historyKey).value(json),
        )
        .options(etcdDeadline())
        .commit());
      if (!result.succeeded) {
        throw new UnavailableError('etcd', `lost the rollout lock of ${app} before the switch (etcd unreachable for longer than the lock's lease?); nothing was switched`);
      }
      return { input, previousRelease, historyKey } satisfies SwitchReceipt;
    },

    async revertSwitch(receipt) {
      const { input } = receipt;
      await etcdCall(`reverting the switch of ${input.app}`, () => etcd
        .if(etcdKeys.release(input.app), 'Value', '==', JSON.stringify(input.release))
        .then(
          ...Object.keys(input.add).filter((key) => !input.remove.some((u) => u.key === key)).map((key) => etcd.delete().key(key)),
          ...input.remove.map((u) => leased(etcd.put(u.key).value(u.address), input.leaseId)),
          receipt.previousRelease === null ? etcd.delete().key(etcdKeys.release(input.app)) : etcd.put(etcdKeys.release(input.app)).value(receipt.previousRelease),
          etcd.delete().key(receipt.historyKey),
        )
        .options(etcdDeadline())
        .commit());
    },

    addressLock: (options) => acquireLock(etcd, etcdKeys.addressLock, 'the address pool lock', options),

    registrar: (app) => etcdCall(`reading the registrar of ${app}`, () => etcd.get(etcdKeys.registrar(app)).options(etcdDeadline()).string()),

    async routeLease(ttlS) {
      const lease = etcd.lease(ttlS);
      lease.on('lost', () => {});
      const id = await etcdCall('granting the route lease', () => lease.grant()).catch(async (err: unknown) => {
        lease.release();
        throw err;
      });
      return {
        id,
        keysOnLease: async (prefix) => {
          const res = await etcdCall(`reading ${prefix}/`, () => etcd.getAll().prefix(`${prefix}/`).options(etcdDeadline()).exec());
          return res.kvs.filter((kv) => String(kv.lease) === id).length;
        },
        release: () => lease.release(),
      };
    },

    async pruneReleases(app, keep) {
      const old = (await history(app)).slice(keep).map(([key]) => key);
      if (old.length === 0) return 0;
      await etcdCall(`pruning the releases of ${app}`, () => Promise.all(old.map((key) => etcd.delete().key(key).exec())));
      return old.length;
    },
  };
}
