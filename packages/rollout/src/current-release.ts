import type { Etcd3 } from 'etcd3';
import { etcdReleaseStore } from './etcd-release-store.js';
import type { ReleaseRecord } from './release-record.js';

/** What is live for `app` (`/slipway/apps/<app>/release`), or null before the first release. Throws UnavailableError. */
export function currentRelease(etcd: Etcd3, app: string): Promise<ReleaseRecord | null> {
  return etcdReleaseStore(etcd).currentRelease(app);
}
