import type Docker from 'dockerode';
import type { AppConfig } from '@slipway/config/types';
import type { UpstreamKey } from '@slipway/router/read-upstreams';
import type { AppContainer } from './container-runtime.js';
import { containerSpec } from './container-spec.js';
import { UnsupportedRoutingError } from './rollout-errors.js';

/** What is there, read under the app's lock. */
export interface RolloutCurrent {
  /** Containers labelled `slipway.app=<app>`. */
  containers: readonly AppContainer[];
  /** Keys under the app's etcd prefix. */
  upstreams: readonly UpstreamKey[];
  /** Addresses the live nginx file routes to (it can lag etcd after a crash between the two). */
  routed: readonly string[];
}

/** What should be there. */
export interface RolloutDesired {
  app: AppConfig;
  image: string;
  sha: string | null;
  /** The job id. */
  release: string;
}

export type RolloutStep =
  | { kind: 'remove-strays'; ids: string[] }
  | { kind: 'start'; replicas: number; spec: Docker.ContainerCreateOptions; port: number }
  | { kind: 'health'; path: string; timeoutMs: number; intervalMs: number }
  | { kind: 'check-proxy' }
  | { kind: 'switch'; prefix: string; removeKeys: string[] }
  | { kind: 'apply-proxy' }
  | { kind: 'drain'; addresses: string[]; timeoutMs: number }
  | { kind: 'stop'; ids: string[]; timeoutS: number };

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
 * A container is *serving* when an etcd key or the live nginx file points
 * at it; it is drained and stopped only after the switch. Any other app
 * container is a *stray* from an attempt that died before its switch (the
 * lock guarantees no other rollout is running): removed first. The switch
 * removes every current key (including keys whose container is gone) and
 * adds the new ones, in one transaction.
 */
export function planRollout(current: RolloutCurrent, desired: RolloutDesired): RolloutPlan {
  const { app } = desired;
  if (app.routing !== 'upstream') throw new UnsupportedRoutingError(app.name, app.routing);

  const keyed = new Set(current.upstreams.map((u) => u.id));
  const routed = new Set(current.routed);
  const isServing = (c: AppContainer) => keyed.has(c.id.slice(0, 12)) || (c.address !== null && routed.has(c.address));
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
  if (routedOnly.length > 0) notes.push(`nginx still routes to ${routedOnly.map(short).join(', ')} though etcd does not (an earlier switch was not applied): drained like the others`);

  const drainable = serving.filter((c) => c.state === 'running' && c.address !== null).map((c) => c.address!);
  const steps: RolloutStep[] = [];
  if (strays.length > 0) steps.push({ kind: 'remove-strays', ids: strays.map((c) => c.id) });
  steps.push(
    { kind: 'start', replicas: app.replicas, spec: containerSpec({ app, image: desired.image, sha: desired.sha, release: desired.release }), port: app.port },
    { kind: 'health', path: app.health.path, timeoutMs: app.health.timeout_s * 1000, intervalMs: app.health.interval_ms },
    { kind: 'check-proxy' },
    { kind: 'switch', prefix: app.etcd_prefix, removeKeys: current.upstreams.map((u) => u.key) },
    { kind: 'apply-proxy' },
  );
  if (drainable.length > 0) steps.push({ kind: 'drain', addresses: drainable, timeoutMs: app.drain_s * 1000 });
  if (serving.length > 0) steps.push({ kind: 'stop', ids: serving.map((c) => c.id), timeoutS: app.stop_timeout_s });
  return { steps, serving, strays, notes };
}

const short = (c: AppContainer) => `${c.id.slice(0, 12)}${c.address ? ` (${c.address})` : ''}`;
