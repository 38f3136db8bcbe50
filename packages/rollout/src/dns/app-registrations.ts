import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdLeaseInvalidError, type Etcd3, type Lease } from 'etcd3';
import type { AppConfig } from '@slipway/config/types';
import { firstLine } from '@slipway/core/slipway-error';
import { etcdCall, etcdDeadline } from '@slipway/etcd/client';
import { etcdKeys } from '@slipway/etcd/keys';
import type { AppContainer, ContainerRuntime } from '../container-runtime.js';
import { probe } from '../health.js';
import { parseReleaseRecord } from '../release-store.js';
import { planRegistration, type RegisteredKey, type RegistrationPlan } from './plan-registration.js';
import type { RegistrationChange } from './registrar.js';

/** One health probe of the registrar: short, a container that hangs is probed again later. */
const PROBE_TIMEOUT_MS = 1_000;
/** A reconcile whose transaction lost a race (a switch, a key deleted meanwhile) is read and planned again, at most this many times in all. */
const RECONCILE_ATTEMPTS = 5;

export interface AppRegistrationsOptions {
  etcd: Etcd3;
  runtime: ContainerRuntime;
  /** TTL of each key's lease. */
  ttlS: number;
  log: (line: string) => void;
  onChange?: (change: RegistrationChange) => void;
  /** Whether this registrar holds the app: nothing is reconciled otherwise. */
  holds: () => boolean;
  /** Asks for another reconcile of the app (a container still failing its probe, an expired lease). */
  requeue: () => void;
}

type Wanted = RegistrationPlan['probe'][number];
type Put = Wanted & { action: 'registered' | 'adopted' };
interface OwnLease { lease: Lease; id: string }

/** What a reconcile reads, with the revisions its transaction is guarded by. */
interface RegistrationRead {
  releaseJob: string | null;
  /** The release key is there but is not a release record (written by hand, or by a newer Slipway): nothing is known live. */
  releaseUnreadable: boolean;
  releaseRevision: string;
  containers: AppContainer[];
  keys: RegisteredKey[];
  keyRevisions: Map<string, string>;
}

/**
 * The reconcile part of the registrar, for one `routing: dns` app: what
 * runs (Docker) and what is registered (etcd) are read, planned
 * (planRegistration), and the plan applied in one guarded transaction.
 * Each registration is on a lease of its own, renewed (`renew`) only while
 * Docker still shows its container running, so a container that dies
 * unnoticed, or a registrar that dies, drops out of etcd within the TTL.
 */
export class AppRegistrations {
  /** This registrar's leases, by container id (12): the keys it renews. */
  private readonly own = new Map<string, OwnLease>();
  /** When a container still waiting to be registered first failed its probe. */
  private readonly failingSince = new Map<string, number>();
  /** When a registered container began failing its probe, without a pass since. */
  private readonly unhealthySince = new Map<string, number>();
  /** Whether "every registered container fails" was said since one last passed. */
  private allFailingSaid = false;
  /** Whether an unreadable release record was said since one was last read. */
  private unreadableSaid = false;

  constructor(private readonly app: AppConfig, private readonly options: AppRegistrationsOptions) {}

  async reconcile(attempt = 1): Promise<void> {
    if (!this.options.holds()) return;
    const { app } = this;
    const read = await this.read();
    if (read.releaseUnreadable) {
      // "Not readable" is not "no release": planned from it, every key of the app would go, and DNS answer nothing.
      if (!this.unreadableSaid) this.options.log(`registrar: ${app.name}: ${etcdKeys.release(app.name)} is not a release record this Slipway reads; the registered keys are left as they are until it is`);
      this.unreadableSaid = true;
      return;
    }
    this.unreadableSaid = false;
    const plan = planRegistration({
      prefix: app.etcd_prefix, port: app.port, releaseJob: read.releaseJob, containers: read.containers, keys: read.keys,
      own: new Map([...this.own].map(([id, o]) => [id, o.id])),
    });
    const [healthy, unhealthy] = await Promise.all([this.probeWaiting(plan.probe), this.probeRegistered(read.keys, plan)]);
    const toPut: Put[] = [...plan.adopt.map((w) => ({ ...w, action: 'adopted' as const })), ...healthy.map((w) => ({ ...w, action: 'registered' as const }))];
    const remove = [...plan.remove, ...unhealthy];

    if ((toPut.length > 0 || remove.length > 0) && !(await this.commit(read, remove, toPut))) {
      if (attempt < RECONCILE_ATTEMPTS) return this.reconcile(attempt + 1);
      throw new Error('the release record or the keys kept changing while registering; trying again at the next tick');
    }
    // Out of DNS until its probe passes again, as a container waiting to be registered.
    for (const { id } of unhealthy) this.unhealthySince.delete(id);
    for (const id of [...plan.drop, ...unhealthy.map((u) => u.id)]) {
      const o = this.own.get(id);
      this.own.delete(id);
      // Revoking deletes only what is still on our lease: a key someone re-put on theirs stays.
      await o?.lease.revoke().catch(() => o.lease.release());
    }
    const retry = plan.probe.some((w) => this.failingSince.has(w.id) && Date.now() - this.failingSince.get(w.id)! < app.health.timeout_s * 1000);
    if (retry) setTimeout(() => this.options.requeue(), Math.max(app.health.interval_ms, 100)).unref();
  }

  /** Renews the leases of registrations whose container the last reconcile saw running. */
  async renew(timeoutMs: number): Promise<void> {
    // All at once, each bounded: one keepalive etcd leaves unanswered holds up no other lease, nor the next tick.
    await Promise.all([...this.own].map(async ([id, o]) => {
      try {
        await Promise.race([o.lease.keepaliveOnce(), sleep(timeoutMs, undefined, { ref: false })]);
      } catch (err) {
        if (err instanceof EtcdLeaseInvalidError) {
          this.own.delete(id);
          this.options.log(`registrar: ${this.app.name}: the lease of ${id} expired (etcd away for longer than ${this.options.ttlS} s?); registering it again`);
          this.options.requeue();
        }
      }
    }));
  }

  /**
   * The fast path for a container that died, was destroyed or paused: its key
   * goes at once, before the reconcile reads anything. Docker's container
   * list can still show it running for a moment after the event, and the key
   * may still be on the rollout's lease (not adopted yet), so the key itself
   * is deleted, not only our lease revoked.
   */
  async removeGone(id12: string, why: string): Promise<void> {
    const { log, onChange } = this.options;
    const app = this.app.name;
    const key = etcdKeys.upstream(this.app.etcd_prefix, id12);
    const o = this.own.get(id12);
    this.own.delete(id12);
    try {
      const deleted = await etcdCall(`removing ${key}`, () => this.options.etcd.delete().key(key).options(etcdDeadline()).exec());
      if (Number(deleted.deleted) > 0) {
        log(`registrar: ${app}: removed ${id12} (${why})`);
        onChange?.({ app, action: 'removed', key, why, at: Date.now() });
      }
    } catch (err) {
      log(`registrar: ${app}: ${firstLine(err)}; the reconcile tries again`);
    } finally {
      await o?.lease.revoke().catch(() => o.lease.release());
    }
  }

  /** Stops renewing every registration, revoking nothing: the keys stay until their TTL, for whoever serves the app next. */
  release(): void {
    for (const o of this.own.values()) o.lease.release();
    this.own.clear();
  }

  private async read(): Promise<RegistrationRead> {
    const { etcd, runtime } = this.options;
    const { app } = this;
    const releaseKey = etcdKeys.release(app.name);
    const [releaseKv, keysRes, containers] = await Promise.all([
      etcdCall(`reading ${releaseKey}`, () => etcd.get(releaseKey).options(etcdDeadline()).exec()),
      etcdCall(`reading ${app.etcd_prefix}/`, () => etcd.getAll().prefix(`${app.etcd_prefix}/`).options(etcdDeadline()).exec()),
      runtime.listAppContainers(app.name, app.port),
    ]);
    const kv = releaseKv.kvs[0];
    const release = parseReleaseRecord(kv ? kv.value.toString() : null);
    return {
      releaseJob: release?.job ?? null,
      releaseUnreadable: kv !== undefined && release === null,
      releaseRevision: kv ? String(kv.mod_revision) : '0',
      containers,
      keys: keysRes.kvs.map((k) => {
        const key = k.key.toString();
        return { key, id: key.slice(app.etcd_prefix.length + 1), address: k.value.toString().trim(), lease: String(k.lease) };
      }),
      keyRevisions: new Map(keysRes.kvs.map((k) => [k.key.toString(), String(k.mod_revision)])),
    };
  }

  /** Probes the containers waiting to be registered; returns the healthy ones, logging each one's first failure. */
  private async probeWaiting(waiting: readonly Wanted[]): Promise<Wanted[]> {
    const { app } = this;
    // Only containers still waiting to be registered keep their first-failure time.
    for (const id of this.failingSince.keys()) if (!waiting.some((w) => w.id === id)) this.failingSince.delete(id);
    const probed = await Promise.all(waiting.map(async (w) => {
      const { status = 0, error } = await probe(`http://${w.address}${app.health.path}`, PROBE_TIMEOUT_MS);
      if (status >= 200 && status < 300) {
        this.failingSince.delete(w.id);
        return w;
      }
      if (!this.failingSince.has(w.id)) {
        this.failingSince.set(w.id, Date.now());
        this.options.log(`registrar: ${app.name}: ${w.id} (${w.address}) not healthy yet on ${app.health.path} (${error ?? `HTTP ${status}`}); probing again`);
      }
      return null;
    }));
    return probed.filter((w): w is Wanted => w !== null);
  }

  /**
   * Probes the containers this registrar keeps registered; returns those to
   * take out of DNS: failing for `health.timeout_s` without a pass (hung,
   * or their app broke after it started). Not the last ones: while every
   * registered container fails, all are kept, since a name that answers
   * no address serves no one.
   */
  private async probeRegistered(keys: readonly RegisteredKey[], plan: RegistrationPlan): Promise<Array<{ id: string; key: string; why: string }>> {
    const { app } = this;
    const going = new Set([...plan.remove.map((r) => r.key), ...plan.drop]);
    const registered = keys.filter((k) => this.own.has(k.id) && !going.has(k.key) && !going.has(k.id));
    for (const id of this.unhealthySince.keys()) if (!registered.some((k) => k.id === id)) this.unhealthySince.delete(id);
    const now = Date.now();
    const failing = (await Promise.all(registered.map(async (k) => {
      const { status = 0, error } = await probe(`http://${k.address}${app.health.path}`, PROBE_TIMEOUT_MS);
      if (status >= 200 && status < 300) {
        this.unhealthySince.delete(k.id);
        return null;
      }
      const last = error ?? `HTTP ${status}`;
      if (!this.unhealthySince.has(k.id)) {
        this.unhealthySince.set(k.id, now);
        this.options.log(`registrar: ${app.name}: ${k.id} (${k.address}), registered, fails its probe on ${app.health.path} (${last}); taken out of DNS if it still does in ${app.health.timeout_s} s`);
      }
      return { id: k.id, key: k.key, last };
    }))).filter((f) => f !== null);
    if (failing.length < registered.length) this.allFailingSaid = false;
    else if (failing.length > 0) {
      if (!this.allFailingSaid) this.options.log(`registrar: ${app.name}: every registered container fails its probe on ${app.health.path}: all kept in DNS`);
      this.allFailingSaid = true;
      return [];
    }
    return failing
      .filter((f) => now - this.unhealthySince.get(f.id)! >= app.health.timeout_s * 1000)
      .map((f) => ({ id: f.id, key: f.key, why: `it has not answered 2xx on ${app.health.path} for ${app.health.timeout_s} s (last: ${f.last})` }));
  }

  /** Puts and removes in one transaction, each put on a lease of its own; false (nothing changed) when what was read changed meanwhile. */
  private async commit(read: RegistrationRead, remove: RegistrationPlan['remove'], toPut: readonly Put[]): Promise<boolean> {
    const { etcd, log, onChange } = this.options;
    const app = this.app.name;
    const leases = await Promise.all(toPut.map(async () => {
      const lease = etcd.lease(this.options.ttlS, { autoKeepAlive: false });
      lease.on('lost', () => {});
      return { lease, id: await etcdCall('granting a registration lease', () => lease.grant()) };
    }));
    // Guarded by the release record (a switch, or its revert, in between changes it) and by every key it
    // touches (a dead container's key deleted meanwhile stays deleted): if any changed, this plan is void.
    const touched = new Set([...remove.map((r) => r.key), ...toPut.map((w) => w.key)]);
    const result = await etcdCall(`registering ${app}`, () => [...touched]
      .reduce((cmp, key) => cmp.and(key, 'Mod', '==', read.keyRevisions.get(key) ?? '0'), etcd.if(etcdKeys.release(app), 'Mod', '==', read.releaseRevision))
      .then(
        // A key put again (its address was wrong) is only put: etcd refuses a transaction that names a key twice.
        ...remove.filter((r) => !toPut.some((w) => w.key === r.key)).map((r) => etcd.delete().key(r.key)),
        ...toPut.map((w, i) => etcd.put(w.key).value(w.address).lease(leases[i]!.id)),
      )
      .else(...toPut.map((w) => etcd.get(w.key)))
      .options(etcdDeadline())
      .commit());
    const at = Date.now();
    // Made already, by this very call: the etcd3 client sent it again after etcd made it and its answer was lost.
    // Its leases are new, so keys on them are its own; revoking them would take the registered keys away.
    const madeBefore = toPut.length > 0 && toPut.every((_, i) => String(result.responses[i]?.response_range?.kvs[0]?.lease) === leases[i]!.id);
    if (!result.succeeded && !madeBefore) {
      await Promise.all(leases.map((l) => l.lease.revoke().catch(() => {})));
      return false;
    }
    for (const r of remove) {
      log(`registrar: ${app}: removed ${r.key} (${r.why})`);
      onChange?.({ app, action: 'removed', key: r.key, why: r.why, at });
    }
    toPut.forEach((w, i) => {
      this.own.get(w.id)?.lease.release();
      this.own.set(w.id, leases[i]!);
      log(`registrar: ${app}: ${w.action} ${w.id} at ${w.address}${w.action === 'adopted' ? ' (switched by a rollout or kept by another registrar)' : ''}`);
      onChange?.({ app, action: w.action, key: w.key, address: w.address, at });
    });
    return true;
  }
}
