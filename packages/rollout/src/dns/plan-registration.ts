import { LABELS } from '@slipway/core/docker';
import { etcdKeys } from '@slipway/etcd/keys';
import type { AppContainer } from '../container-runtime.js';

/**
 * Lease TTL of a routing: dns key (`<etcd_prefix>/<id12>` = `ip:port`):
 * renewed by the registrar while the container runs, so a container that
 * dies unnoticed, or a registrar that dies, drops out of etcd (and so out
 * of DNS) within this long without anyone cleaning up. Longer than
 * REGISTRAR_SESSION_TTL_S, so that a standby registrar takes over the keys
 * of a dead one before they expire.
 */
export const REGISTRATION_TTL_S = 10;
/** Lease TTL of a registrar's claim on its apps (the registrar key of @slipway/etcd). */
export const REGISTRAR_SESSION_TTL_S = 3;
/** How long a rollout waits at its end for the registrar to take over the keys it switched (normally milliseconds). */
export const HAND_OVER_TIMEOUT_MS = 3_000;

/** A key under the app's prefix as the registrar reads it: with the lease it is on (`'0'`: none). */
export interface RegisteredKey {
  key: string;
  /** The last path segment (a container id, 12 hex digits, when Slipway wrote it). */
  id: string;
  address: string;
  lease: string;
}

export interface RegistrationState {
  /** `<etcd_prefix>` of the app. */
  prefix: string;
  /** The app's port: a container of a dns app is published at it. */
  port: number;
  /** The job of the live release (the release record), or null before the first. */
  releaseJob: string | null;
  containers: readonly AppContainer[];
  keys: readonly RegisteredKey[];
  /** This registrar's leases, by container id (12): the keys it renews. */
  own: ReadonlyMap<string, string>;
}

export interface RegistrationPlan {
  /** Containers that should be registered and are not: probed on `health.path`, registered once healthy. */
  probe: Array<{ id: string; key: string; address: string }>;
  /** Registered by someone else (a rollout's switch, a registrar that died): put again on our own lease, no probe. */
  adopt: Array<{ id: string; key: string; address: string }>;
  /** Keys that should not be there, with why. */
  remove: Array<{ key: string; why: string }>;
  /** Our registrations of containers that should not be registered (any more): their leases are revoked. */
  drop: string[];
}

/**
 * What the registrar should change for one `routing: dns` app. Pure.
 *
 * A container should be registered when it is *running*, belongs to the
 * *live release* (label `slipway.release` = the release record's job), and
 * is published at the app's port. The release record is what the
 * rollout's switch changes, in the same transaction as the keys, so the
 * registrar agrees with every switch and never undoes one: before it, the
 * new containers are not of the live release (not registered, however
 * healthy); after it, the old ones are not (never put back). Every other key
 * under the prefix goes: an old release's, a dead or vanished container's,
 * one written by hand.
 */
export function planRegistration(state: RegistrationState): RegistrationPlan {
  const want = new Map<string, { id: string; key: string; address: string }>();
  for (const c of state.containers) {
    const id = c.id.slice(0, 12);
    if (c.state !== 'running' || c.address === null || state.releaseJob === null) continue;
    if (c.labels[LABELS.release] !== state.releaseJob || Number(c.address.split(':')[1]) !== state.port) continue;
    want.set(id, { id, key: etcdKeys.upstream(state.prefix, id), address: c.address });
  }
  const plan: RegistrationPlan = { probe: [], adopt: [], remove: [], drop: [] };
  const keyed = new Map(state.keys.map((k) => [k.key, k]));
  for (const w of want.values()) {
    const k = keyed.get(w.key);
    if (!k) plan.probe.push(w);
    else if (k.address !== w.address) {
      plan.remove.push({ key: k.key, why: `it says ${k.address}, but the container is published on ${w.address}` });
      plan.probe.push(w);
    } else if (k.lease !== state.own.get(w.id)) plan.adopt.push(w);
  }
  const present = new Map(state.containers.map((c) => [c.id.slice(0, 12), c]));
  for (const k of state.keys) {
    if (want.has(k.id) && want.get(k.id)!.key === k.key) continue;
    const c = present.get(k.id);
    const why = !c ? 'its container does not exist'
      : c.state !== 'running' ? `its container is ${c.state}`
        : c.labels[LABELS.release] !== state.releaseJob ? `its container belongs to release ${c.labels[LABELS.release] ?? '(none)'}, not the live ${state.releaseJob ?? '(none)'}`
          : `its container is not published at port ${state.port}`;
    plan.remove.push({ key: k.key, why });
  }
  for (const id of state.own.keys()) if (!want.has(id)) plan.drop.push(id);
  return plan;
}
