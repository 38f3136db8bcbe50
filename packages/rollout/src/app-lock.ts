import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Etcd3, Lease } from 'etcd3';
import { etcdCall } from '@slipway/etcd/client';
import { etcdKeys } from '@slipway/etcd/keys';
import { CancelledError, LockTimeoutError } from './rollout-errors.js';

/** Lease TTL of the lock: a crashed holder frees it within this long. */
export const LOCK_TTL_S = 5;
/** How long a rollout waits for another rollout of the same app. */
export const LOCK_WAIT_MS = 15 * 60_000;
const POLL_MS = 200;

export interface AppLock {
  key: string;
  /** The value written under `key`; the switch transaction compares it (a fencing token). */
  value: string;
  /** True once the lease is known to be gone (etcd unreachable for longer than the TTL). */
  readonly lost: boolean;
  /** Revokes the lease (deleting the key). Never throws: the TTL frees it anyway. */
  release(): Promise<void>;
}

export interface AcquireLockOptions {
  /** Written into the lock so a waiting rollout can say who holds it. */
  job: string;
  /** Default LOCK_TTL_S. */
  ttlS?: number;
  /** Default LOCK_WAIT_MS. */
  waitMs?: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/**
 * Takes the per-app lock `/slipway/locks/<app>`: a key created only if
 * absent, attached to a lease kept alive while we run. Waits (polling)
 * while another rollout holds it. Throws UnavailableError when etcd cannot
 * be reached, LockTimeoutError after `waitMs`, CancelledError on `signal`.
 */
export function acquireAppLock(etcd: Etcd3, app: string, options: AcquireLockOptions): Promise<AppLock> {
  return acquireLock(etcd, etcdKeys.lock(app), `the rollout lock of ${app}`, options);
}

/** The same for any lock key (`what` names it in log lines and errors), e.g. etcdKeys.addressLock. */
export async function acquireLock(etcd: Etcd3, key: string, what: string, options: AcquireLockOptions): Promise<AppLock> {
  const value = JSON.stringify({ job: options.job, host: hostname(), pid: process.pid, at: new Date().toISOString() });
  const log = options.log ?? (() => {});
  const ttlMs = (options.ttlS ?? LOCK_TTL_S) * 1000;
  const lease: Lease = etcd.lease(options.ttlS ?? LOCK_TTL_S);
  let lost = false;
  lease.on('lost', () => {
    lost = true;
  });
  // The client says 'lost' only twice the TTL after its last renewal, while etcd frees the key after one TTL: the lock
  // is taken as lost once a TTL has passed since the last keepalive that etcd confirmed was sent.
  let firedAt = Date.now();
  let renewedAt = Date.now();
  lease.on('keepaliveFired', () => {
    firedAt = Date.now();
  });
  lease.on('keepaliveSucceeded', () => {
    renewedAt = firedAt;
  });
  const started = Date.now();
  let announced = false;
  try {
    const leaseId = await etcdCall('granting the lock lease', () => lease.grant());
    for (;;) {
      if (options.signal?.aborted) throw new CancelledError('the wait for the lock');
      const result = await etcdCall(`taking the lock ${key}`, () => etcd.if(key, 'Create', '==', 0)
        .then(etcd.put(key).value(value).lease(leaseId))
        .else(etcd.get(key))
        .commit());
      const holder = result.responses[0]?.response_range?.kvs[0]?.value.toString() ?? 'unknown';
      // Held by this very call: the etcd3 client sent it again after etcd took it and its answer was lost.
      if (result.succeeded || holder === value) break;
      if (!announced) {
        log(`waiting for ${what}: held by ${holder}`);
        announced = true;
      }
      if (Date.now() - started > (options.waitMs ?? LOCK_WAIT_MS)) throw new LockTimeoutError(what, Date.now() - started, holder);
      await sleep(POLL_MS);
    }
  } catch (err) {
    // Bounded as release's: a half-closed etcd connection would otherwise hold the job here.
    await etcdCall('releasing the lock lease', () => lease.revoke(), 2_000).catch(() => lease.release());
    throw err;
  }
  if (announced) log(`got ${what} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return {
    key,
    value,
    get lost() {
      return lost || Date.now() - renewedAt > ttlMs;
    },
    release: async () => {
      await etcdCall('releasing the lock', () => lease.revoke(), 2_000).catch(() => lease.release());
    },
  };
}
