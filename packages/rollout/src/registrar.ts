import { hostname } from 'node:os';
import type Docker from 'dockerode';
import { type Etcd3, EtcdLeaseInvalidError, type Lease, type Watcher } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { firstLine } from '@slipway/core/slipway-error';
import { etcdCall, etcdDeadline } from '@slipway/etcd/client';
import { etcdKeys } from '@slipway/etcd/keys';
import { watchDockerEvents } from './docker-events.js';
import { dockerRuntime } from './docker-runtime.js';
import { parseReleaseRecord } from './release-record.js';
import { planRegistration, type RegisteredKey } from './plan-registration.js';
import { REGISTRAR_SESSION_TTL_S, REGISTRATION_TTL_S } from './registration.js';
import { LABELS } from '@slipway/core/docker';
import { probe } from './wait-healthy.js';

/** One health probe of the registrar: short, a container that hangs is probed again later. */
const PROBE_TIMEOUT_MS = 1_000;
/** Docker events that can change what should be registered. */
const ACTIONS = ['start', 'die', 'destroy', 'pause', 'unpause'] as const;
/** Events that end a container's registration at once, before any reconcile. */
const GONE = new Set(['die', 'destroy', 'pause']);

export interface RegistrarOptions {
  /** The configuration's apps; only those with `routing: dns` are served. */
  apps: SlipwayConfig['apps'];
  docker: Docker;
  /** Create it with createEtcdClient (@slipway/etcd/client). */
  etcd: Etcd3;
  log?: (line: string) => void;
  /** TTL of each key's lease. Default REGISTRATION_TTL_S (10 s). */
  ttlS?: number;
  /** TTL of the claim on the apps. Default REGISTRAR_SESSION_TTL_S (3 s). */
  sessionTtlS?: number;
  /** Told about every change made to etcd (tests, the dashboard). */
  onChange?: (change: RegistrationChange) => void;
}

export interface RegistrationChange {
  app: string;
  action: 'registered' | 'adopted' | 'removed';
  key: string;
  address?: string;
  why?: string;
  /** Date.now() when etcd had it. */
  at: number;
}

export interface RegistrarHandle {
  /** The dns apps this registrar holds now (another registrar holds the rest). */
  serving(): string[];
  /** Reconciles one app (or all) now; resolves when done. */
  reconcile(app?: string): Promise<void>;
  /**
   * Stops: gives up its claims at once (a standby registrar takes over and
   * adopts the keys) and stops renewing, revoking nothing: a registrar that
   * is restarted within the TTL keeps every app's DNS as it was.
   */
  close(): Promise<void>;
}

interface Own { lease: Lease; id: string }

/**
 * skydock's and registrator's role for `routing: dns` apps, as a
 * long-running part of `slipway router`: containers labelled
 * `slipway.app=<app>` are registered as `<etcd_prefix>/<id12>` = `ip:port`
 * once our own probe of `health.path` answers 2xx, and removed when they
 * die, stop or vanish. What should be registered is planRegistration's rule
 * (running, of the live release, at the app's port), which agrees with
 * every rollout switch. Each key is on a lease of its own, renewed every
 * ttlS/3 only while Docker still shows its container running, so a
 * container that dies unnoticed, or a registrar that dies, drops out of
 * etcd within ttlS by itself. On start, and whenever Docker's event stream
 * or etcd comes back, every app is reconciled with what runs.
 *
 * One registrar serves an app at a time: it claims
 * `/slipway/apps/<app>/registrar` on a session lease (sessionTtlS); another
 * registrar (another `slipway router`) waits and takes over when that key
 * goes, adopting the keys before their leases run out. A rollout of a dns
 * app refuses to switch while no registrar holds it.
 *
 * Throws UnavailableError when etcd cannot be reached at start.
 */
export async function startRegistrar(options: RegistrarOptions): Promise<RegistrarHandle> {
  const { etcd, docker } = options;
  const log = options.log ?? (() => {});
  const ttlS = options.ttlS ?? REGISTRATION_TTL_S;
  const sessionTtlS = options.sessionTtlS ?? REGISTRAR_SESSION_TTL_S;
  const apps = new Map(Object.values(options.apps).filter((a) => a.routing === 'dns').map((a) => [a.name, a]));
  const runtime = dockerRuntime(docker);
  const own = new Map<string, Map<string, Own>>([...apps.keys()].map((name) => [name, new Map()]));
  const claimed = new Set<string>();
  /** Per app: when a container still waiting to be registered first failed its probe. */
  const failing = new Map<string, Map<string, number>>([...apps.keys()].map((name) => [name, new Map()]));
  const identity = { host: hostname(), pid: process.pid, since: new Date().toISOString() };
  let closed = false;
  let session: { lease: Lease; id: string };

  const newSession = async () => {
    const lease = etcd.lease(sessionTtlS);
    lease.on('lost', (err) => {
      if (closed || session.lease !== lease) return;
      log(`registrar: lost its etcd session (${firstLine(err)}); claiming its apps again once etcd answers`);
      claimed.clear();
      void regainSession();
    });
    const id = await etcdCall('granting the registrar session', () => lease.grant()).catch((err: unknown) => {
      lease.release();
      throw err;
    });
    session = { lease, id };
  };
  const regainSession = async () => {
    while (!closed) {
      try {
        await newSession();
        await claimAll();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  };

  const claim = async (app: string) => {
    const key = etcdKeys.registrar(app);
    const value = JSON.stringify({ ...identity, session: session.id });
    const result = await etcdCall(`claiming ${key}`, () => etcd.if(key, 'Create', '==', 0)
      .then(etcd.put(key).value(value).lease(session.id))
      .else(etcd.get(key))
      .commit());
    const holder = result.responses[0]?.response_range?.kvs[0];
    const ours = result.succeeded || (holder !== undefined && String(holder.lease) === session.id);
    if (ours && !claimed.has(app)) {
      claimed.add(app);
      log(`registrar: serving ${app}`);
      void queue(app);
    } else if (!ours && claimed.delete(app)) {
      log(`registrar: ${app} is served by ${holder?.value.toString() ?? 'another registrar'} now`);
      for (const o of own.get(app)!.values()) o.lease.release();
      own.get(app)!.clear();
    }
  };
  const claimAll = async () => {
    for (const app of apps.keys()) await claim(app).catch((err: Error) => log(`registrar: cannot claim ${app}: ${firstLine(err)}`));
  };

  // One reconcile per app at a time; requests while one runs coalesce into one more.
  const running = new Map<string, Promise<void>>();
  const pending = new Set<string>();
  const queue = (app: string): Promise<void> => {
    if (closed || !apps.has(app)) return Promise.resolve();
    if (running.has(app)) {
      pending.add(app);
      return running.get(app)!;
    }
    const run = (async () => {
      do {
        pending.delete(app);
        await reconcile(apps.get(app)!).catch((err: Error) => log(`registrar: ${app}: ${firstLine(err)}`));
      } while (pending.has(app) && !closed);
    })().finally(() => running.delete(app));
    running.set(app, run);
    return run;
  };

  const reconcile = async (app: AppConfig, attempt = 1): Promise<void> => {
    if (!claimed.has(app.name)) return;
    const mine = own.get(app.name)!;
    const releaseKey = etcdKeys.release(app.name);
    const [releaseKv, keysRes, containers] = await Promise.all([
      etcdCall(`reading ${releaseKey}`, () => etcd.get(releaseKey).options(etcdDeadline()).exec()),
      etcdCall(`reading ${app.etcd_prefix}/`, () => etcd.getAll().prefix(`${app.etcd_prefix}/`).options(etcdDeadline()).exec()),
      runtime.listAppContainers(app.name, app.port),
    ]);
    const kv = releaseKv.kvs[0];
    const modRevision = kv ? String(kv.mod_revision) : '0';
    const releaseJob = parseReleaseRecord(kv ? kv.value.toString() : null)?.job ?? null;
    const keys: RegisteredKey[] = keysRes.kvs.map((k) => {
      const key = k.key.toString();
      return { key, id: key.slice(app.etcd_prefix.length + 1), address: k.value.toString().trim(), lease: String(k.lease) };
    });
    const plan = planRegistration({
      prefix: app.etcd_prefix, port: app.port, releaseJob, containers, keys,
      own: new Map([...mine].map(([id, o]) => [id, o.id])),
    });

    const failingSince = failing.get(app.name)!;
    // Only containers still waiting to be registered keep their first-failure time.
    for (const id of failingSince.keys()) if (!plan.probe.some((w) => w.id === id)) failingSince.delete(id);
    const healthy = (await Promise.all(plan.probe.map(async (w) => {
      const { status = 0, error } = await probe(`http://${w.address}${app.health.path}`, PROBE_TIMEOUT_MS);
      if (status >= 200 && status < 300) {
        failingSince.delete(w.id);
        return w;
      }
      if (!failingSince.has(w.id)) {
        failingSince.set(w.id, Date.now());
        log(`registrar: ${app.name}: ${w.id} (${w.address}) not healthy yet on ${app.health.path} (${error ?? `HTTP ${status}`}); probing again`);
      }
      return null;
    }))).filter((w): w is NonNullable<typeof w> => w !== null);
    const toPut = [...plan.adopt.map((w) => ({ ...w, action: 'adopted' as const })), ...healthy.map((w) => ({ ...w, action: 'registered' as const }))];

    if (toPut.length > 0 || plan.remove.length > 0) {
      const leases = await Promise.all(toPut.map(async () => {
        const lease = etcd.lease(ttlS, { autoKeepAlive: false });
        lease.on('lost', () => {});
        return { lease, id: await etcdCall('granting a registration lease', () => lease.grant()) };
      }));
      // Guarded by the release record (a switch, or its revert, in between changes it) and by every key it
      // touches (a dead container's key deleted meanwhile stays deleted): if any changed, this plan is void.
      const revisions = new Map(keysRes.kvs.map((k) => [k.key.toString(), String(k.mod_revision)]));
      const touched = new Set([...plan.remove.map((r) => r.key), ...toPut.map((w) => w.key)]);
      const result = await etcdCall(`registering ${app.name}`, () => [...touched]
        .reduce((cmp, key) => cmp.and(key, 'Mod', '==', revisions.get(key) ?? '0'), etcd.if(releaseKey, 'Mod', '==', modRevision))
        .then(
          ...plan.remove.map((r) => etcd.delete().key(r.key)),
          ...toPut.map((w, i) => etcd.put(w.key).value(w.address).lease(leases[i]!.id)),
        )
        .options(etcdDeadline())
        .commit());
      const at = Date.now();
      if (!result.succeeded) {
        await Promise.all(leases.map((l) => l.lease.revoke().catch(() => {})));
        if (attempt < 5) return reconcile(app, attempt + 1);
        throw new Error('the release record or the keys kept changing while registering; trying again at the next tick');
      }
      for (const r of plan.remove) {
        log(`registrar: ${app.name}: removed ${r.key} (${r.why})`);
        options.onChange?.({ app: app.name, action: 'removed', key: r.key, why: r.why, at });
      }
      toPut.forEach((w, i) => {
        mine.get(w.id)?.lease.release();
        mine.set(w.id, leases[i]!);
        log(`registrar: ${app.name}: ${w.action} ${w.id} at ${w.address}${w.action === 'adopted' ? ' (switched by a rollout or kept by another registrar)' : ''}`);
        options.onChange?.({ app: app.name, action: w.action, key: w.key, address: w.address, at });
      });
    }
    for (const id of plan.drop) {
      const o = mine.get(id);
      mine.delete(id);
      // Revoking deletes only what is still on our lease: a key someone re-put on theirs stays.
      await o?.lease.revoke().catch(() => o.lease.release());
    }
    const retryIn = plan.probe.some((w) => failingSince.has(w.id) && Date.now() - failingSince.get(w.id)! < app.health.timeout_s * 1000);
    if (retryIn) setTimeout(() => void queue(app.name), Math.max(app.health.interval_ms, 100)).unref();
  };

  /** Renews the leases of registrations whose container the last reconcile saw running. */
  const renew = async (app: string) => {
    for (const [id, o] of own.get(app)!) {
      try {
        await o.lease.keepaliveOnce();
      } catch (err) {
        if (err instanceof EtcdLeaseInvalidError) {
          own.get(app)!.delete(id);
          log(`registrar: ${app}: the lease of ${id} expired (etcd away for longer than ${ttlS} s?); registering it again`);
          void queue(app);
        }
      }
    }
  };

  /**
   * The fast path for a container that died, was destroyed or paused: its key
   * goes at once, before the reconcile reads anything. Docker's container
   * list can still show it running for a moment after the event, and the key
   * may still be on the rollout's lease (not adopted yet), so the key itself
   * is deleted, not only our lease revoked.
   */
  const removeGone = async (app: string, id12: string, why: string) => {
    const key = etcdKeys.upstream(apps.get(app)!.etcd_prefix, id12);
    const o = own.get(app)!.get(id12);
    own.get(app)!.delete(id12);
    try {
      const deleted = await etcdCall(`removing ${key}`, () => etcd.delete().key(key).options(etcdDeadline()).exec());
      if (Number(deleted.deleted) > 0) {
        log(`registrar: ${app}: removed ${id12} (${why})`);
        options.onChange?.({ app, action: 'removed', key, why, at: Date.now() });
      }
    } catch (err) {
      log(`registrar: ${app}: ${firstLine(err)}; the reconcile tries again`);
    } finally {
      await o?.lease.revoke().catch(() => o.lease.release());
    }
  };

  await newSession();
  const events = watchDockerEvents({
    docker,
    label: LABELS.app,
    actions: ACTIONS,
    log: (line) => log(`registrar: ${line}`),
    onConnected: () => apps.forEach((_a, name) => void queue(name)),
    onEvent: (e) => {
      const app = e.labels[LABELS.app];
      if (!app || !apps.has(app)) return;
      if (GONE.has(e.action) && claimed.has(app)) {
        void removeGone(app, e.id.slice(0, 12), e.action).finally(() => void queue(app));
      } else {
        void queue(app);
      }
    },
  });
  const claimWatchers: Watcher[] = [...apps.keys()].map((app) => etcd.watch().key(etcdKeys.registrar(app)).watcher()
    .on('delete', () => void claim(app).catch(() => {}))
    .on('connected', () => void claim(app).catch(() => {}))
    .on('error', () => {}));
  await claimAll();
  const tick = setInterval(() => {
    void (async () => {
      if (claimed.size < apps.size) await claimAll();
      for (const app of claimed) {
        await queue(app);
        await renew(app);
      }
    })();
  }, (ttlS * 1000) / 3);
  tick.unref();
  log(`registrar: ${apps.size} dns app${apps.size === 1 ? '' : 's'} (${[...apps.keys()].join(', ') || 'none'}); key TTL ${ttlS} s, serving ${[...claimed].join(', ') || 'none yet'}`);

  return {
    serving: () => [...claimed],
    reconcile: async (app) => {
      if (app !== undefined) return queue(app);
      await Promise.all([...apps.keys()].map((name) => queue(name)));
    },
    close: async () => {
      closed = true;
      clearInterval(tick);
      events.close();
      await Promise.all(claimWatchers.map((w) => w.cancel().catch(() => {})));
      await Promise.all(running.values());
      for (const mine of own.values()) for (const o of mine.values()) o.lease.release();
      await etcdCall('giving up the registrar claims', () => session.lease.revoke(), 2_000).catch(() => session.lease.release());
    },
  };
}
