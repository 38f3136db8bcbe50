import type { Etcd3 } from 'etcd3';
import { etcdReleaseStore } from './etcd-release-store.js';
import type { ReleaseRecord } from './release-record.js';

/** The kept release history of `app`, newest (the live one) first; at most RELEASES_KEPT. Throws UnavailableError. */
export function listReleases(etcd: Etcd3, app: string): Promise<ReleaseRecord[]> {
  return etcdReleaseStore(etcd).listReleases(app);
}
