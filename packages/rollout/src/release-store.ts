import type { UpstreamKey } from '@slipway/etcd/keys';
import type { AcquireLockOptions, AppLock } from './app-lock.js';
import type { ReleaseRecord } from './release-record.js';

export interface SwitchInput {
  app: string;
  /** Current keys, deleted by the switch (and put back by a revert). */
  remove: readonly UpstreamKey[];
  /** New keys: `<prefix>/<id12>` → `host:port`. */
  add: Readonly<Record<string, string>>;
  release: ReleaseRecord;
  /** The switch only happens while this lock is still ours. */
  lock: AppLock;
  /**
   * routing: dns: the new keys (and, on a revert, the restored ones) are
   * put on this lease, so they drop out by themselves unless a registrar
   * takes them over. Absent for routing: upstream (keys without a lease).
   */
  leaseId?: string;
}

export interface SwitchReceipt {
  input: SwitchInput;
  /** The release record the switch replaced (raw), or null. */
  previousRelease: string | null;
  historyKey: string;
}

/** routing: dns: the lease a switch puts its keys on until the registrar takes them over. */
export interface RouteLease {
  id: string;
  /** Keys under `prefix/` still on this lease (0 once the registrar has taken them all over). */
  keysOnLease(prefix: string): Promise<number>;
  /** Stops renewing it (never revokes: keys the registrar has not taken over yet stay for the TTL). */
  release(): void;
}

/**
 * The store seam: where the live set and the releases are kept. One
 * implementation, over etcd (`etcdReleaseStore`). Every method throws
 * UnavailableError when the store cannot be reached.
 */
export interface ReleaseStore {
  lock(app: string, options: AcquireLockOptions): Promise<AppLock>;
  upstreams(prefix: string): Promise<UpstreamKey[]>;
  currentRelease(app: string): Promise<ReleaseRecord | null>;
  /** Newest first. */
  listReleases(app: string): Promise<ReleaseRecord[]>;
  /** Swaps the upstream keys and records the release, in one transaction. */
  switchRelease(input: SwitchInput): Promise<SwitchReceipt>;
  /** Undoes a switch whose proxy apply failed. */
  revertSwitch(receipt: SwitchReceipt): Promise<void>;
  /** Drops history entries beyond the newest `keep`; returns how many. */
  pruneReleases(app: string, keep: number): Promise<number>;
  /** routing: dns: one address allocation at a time, across apps and workers. */
  addressLock(options: AcquireLockOptions): Promise<AppLock>;
  /** routing: dns: who runs the registrar serving `app` (the value it wrote), or null when none does. */
  registrar(app: string): Promise<string | null>;
  /** routing: dns: grants a lease of `ttlS`, kept alive until released. */
  routeLease(ttlS: number): Promise<RouteLease>;
}
