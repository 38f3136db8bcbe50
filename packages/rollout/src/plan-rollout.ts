import type Docker from 'dockerode';
import type { AppConfig } from '@slipway/config/types';
import { LABELS } from '@slipway/core/docker';
import type { UpstreamKey } from '@slipway/etcd/keys';
import { RESOLVER_CACHE_MS } from '@slipway/router/dns';
import { containerSpec, type AppContainer } from './container-runtime.js';
import { HAND_OVER_TIMEOUT_MS, REGISTRATION_TTL_S } from './dns/plan-registration.js';
import { UnsupportedRoutingError } from './rollout-errors.js';

/** What is there, read under the app's lock. */
export interface RolloutCurrent {
  /** Containers labelled `slipway.app=<app>`. */
  containers: readonly AppContainer[];
  /** Keys under the app's etcd prefix. */
  upstreams: readonly UpstreamKey[];
  /**
   * Addresses traffic goes to now: those of the live nginx file (it can lag
   * etcd after a crash between the two), or for routing: dns those the DNS
   * server answers (`ip:port`).
   */
  routed: readonly string[];
  /**
   * routing: dns: the job of the live release. Its running containers are
   * serving even while unregistered (one restarted by its policy, waiting
   * for the registrar's health check).
   */
  releaseJob?: string | null;
}

/**
 * A few hundred milliseconds beyond nginx's resolver cache: its clock is
 * the event loop's, updated when a worker wakes up.
 */
export const DNS_SETTLE_MARGIN_MS = 100;
/** routing: dns: how long after a change of the app's DNS records an nginx worker may still pick an address it cached before. */
export const DNS_SETTLE_MS = RESOLVER_CACHE_MS + DNS_SETTLE_MARGIN_MS;

/** What should be there. */
export interface RolloutDesired {
  app: AppConfig;
  image: string;
  sha: string | null;
  /** The job id. */
  release: string;
  /** routing: dns: `dns.address_pool`. Required for a dns app. */
  addressPool?: string;
}

export type RolloutStep =
  /** `addresses`: the running strays', drained first when they carry connections (see drainBusyStrays). */
  | { kind: 'remove-strays'; ids: string[]; addresses: string[] }
  /** routing: dns: a registrar must hold the app, or nothing would renew the keys after the switch. */
  | { kind: 'check-registrar' }
  /** `addressPool` (routing: dns): each replica is published on its own free address of the pool, at `port`. */
  | { kind: 'start'; replicas: number; spec: Docker.ContainerCreateOptions; port: number; addressPool?: string }
  | { kind: 'health'; path: string; timeoutMs: number; intervalMs: number }
  | { kind: 'check-proxy' }
  /** `leaseTtlS` (routing: dns): the new keys go on a lease of that TTL, handed over to the registrar. */
  | { kind: 'switch'; prefix: string; removeKeys: string[]; leaseTtlS?: number }
  | { kind: 'apply-proxy' }
  /** `settleMs` (routing: dns): waited first, whatever `timeoutMs` says: nginx's resolver caches may still pick an old address until then. */
  | { kind: 'drain'; addresses: string[]; timeoutMs: number; settleMs?: number }
  | { kind: 'stop'; ids: string[]; timeoutS: number }
  /** routing: dns: wait (at most `timeoutMs`) until the registrar has taken over the switched keys. */
  | { kind: 'hand-over'; prefix: string; timeoutMs: number };

export interface RolloutPlan {
  steps: RolloutStep[];
  /** Containers serving now: drained and stopped after the switch. */
  serving: AppContainer[];
  /** App containers nothing routes to (left by a crashed attempt): removed first. */
  strays: AppContainer[];
  /** Things worth a line in the job log. */
  notes: string[];
}

/**
 * Plans a rollout. Pure: no IO, every decision testable from data.
 *
 * A container is *serving* when an etcd key or the live routing (nginx
 * file, or DNS answer) points at it, or (routing: dns) when it is a running
 * container of the live release; it is drained and stopped only after the
 * switch. Any other app container is a *stray* from an attempt that died
 * before its switch (the lock guarantees no other rollout is running):
 * removed first. The switch removes every current key (including keys
 * whose container is gone) and adds the new ones, in one transaction.
 *
 * routing: dns adds: a registrar check before anything starts, addresses
 * from the pool, the keys on a lease the registrar takes over, and a drain
 * that first waits out nginx's resolver caches (RESOLVER_CACHE_MS).
 */
/**
 * routing: dns: a running (or restarting) container of the live release,
 * which serves whether or not the registrar has registered it yet.
 */
export function ofLiveDnsRelease(app: Pick<AppConfig, 'routing'>, releaseJob: string | null, c: AppContainer): boolean {
  return app.routing === 'dns' && releaseJob !== null && c.labels[LABELS.release] === releaseJob && (c.state === 'running' || c.state === 'restarting');
}

/** The published addresses of the running ones of `containers`: what a drain counts connections to. */
const runningAddresses = (containers: readonly AppContainer[]) => containers.filter((c) => c.state === 'running' && c.address !== null).map((c) => c.address!);

export function planRollout(current: RolloutCurrent, desired: RolloutDesired): RolloutPlan {
  const { app } = desired;
  const dns = app.routing === 'dns';
  if (dns && !desired.addressPool) throw new UnsupportedRoutingError(app.name, app.routing, 'but the rollout was given no `dns` settings (pass `dns: config.dns`)');

  const keyed = new Set(current.upstreams.map((u) => u.id));
  const routed = new Set(current.routed);
  const isServing = (c: AppContainer) => keyed.has(c.id.slice(0, 12)) || (c.address !== null && routed.has(c.address)) || ofLiveDnsRelease(app, current.releaseJob ?? null, c);
  const serving = current.containers.filter(isServing);
  const strays = current.containers.filter((c) => !isServing(c));

  const notes: string[] = [];
  if (strays.length > 0) {
    notes.push(`${strays.length} stray container${strays.length === 1 ? '' : 's'} (not in etcd nor nginx, left by an unfinished rollout) will be removed: ${strays.map(short).join(', ')}`);
  }
  const present = new Set(current.containers.map((c) => c.id.slice(0, 12)));
  for (const u of current.upstreams) {
    if (!present.has(u.id)) notes.push(`upstream key ${u.key} (${u.address}) has no container; it goes in the switch`);
  }
  const routedOnly = serving.filter((c) => !keyed.has(c.id.slice(0, 12)));
  if (routedOnly.length > 0) {
    notes.push(dns
      ? `${routedOnly.map(short).join(', ')} of the live release ${routedOnly.length === 1 ? 'is' : 'are'} not in etcd (not registered yet, or DNS still answers ${routedOnly.length === 1 ? 'it' : 'them'}): drained like the others`
      : `nginx still routes to ${routedOnly.map(short).join(', ')} though etcd does not (an earlier switch was not applied): drained like the others`);
  }

  const drainable = runningAddresses(serving);
  const steps: RolloutStep[] = [];
  if (strays.length > 0) steps.push({ kind: 'remove-strays', ids: strays.map((c) => c.id), addresses: runningAddresses(strays) });
  if (dns) steps.push({ kind: 'check-registrar' });
  steps.push(
    {
      kind: 'start', replicas: app.replicas, spec: containerSpec({ app, image: desired.image, sha: desired.sha, release: desired.release }), port: app.port,
      ...(dns ? { addressPool: desired.addressPool } : {}),
    },
    { kind: 'health', path: app.health.path, timeoutMs: app.health.timeout_s * 1000, intervalMs: app.health.interval_ms },
    { kind: 'check-proxy' },
    { kind: 'switch', prefix: app.etcd_prefix, removeKeys: current.upstreams.map((u) => u.key), ...(dns ? { leaseTtlS: REGISTRATION_TTL_S } : {}) },
    { kind: 'apply-proxy' },
  );
  if (drainable.length > 0) {
    steps.push({ kind: 'drain', addresses: drainable, timeoutMs: app.drain_s * 1000, ...(dns ? { settleMs: DNS_SETTLE_MS } : {}) });
  }
  if (serving.length > 0) steps.push({ kind: 'stop', ids: serving.map((c) => c.id), timeoutS: app.stop_timeout_s });
  if (dns) steps.push({ kind: 'hand-over', prefix: app.etcd_prefix, timeoutMs: HAND_OVER_TIMEOUT_MS });
  return { steps, serving, strays, notes };
}

const short = (c: AppContainer) => `${c.id.slice(0, 12)}${c.address ? ` (${c.address})` : ''}`;
