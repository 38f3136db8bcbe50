import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { SlipwayConfig } from '@slipway/config/types';
import { LABELS } from '@slipway/core/docker';
import type { UpstreamKey } from '@slipway/etcd/keys';
import { DockerRuntime, type AppContainer } from './container-runtime.js';
import { watchDockerEvents } from './dns/docker-events.js';
import { startUpstreamFollower, type UpstreamFollowerHandle, type UpstreamFollowerOptions, type UpstreamRewrite } from './upstream-follower.js';

/*
 * Containers restart; their keys follow. On one engine a container
 * publishes its port with a Docker-chosen host port, and Docker chooses
 * again each time it starts the container: after a crash under
 * `unless-stopped`, a dockerd restart, a host reboot. The rollout wrote
 * the port of the first start; without this, nginx went on sending the
 * app's requests to a port nobody served (502 until the next deploy) or,
 * worse, that another container now held.
 *
 * Run by `slipway router` for `routing: upstream` apps (dns apps have
 * their registrar, swarm apps the task watcher): Docker's `start` events
 * say which app to look at, a reconcile every PORT_FOLLOW_INTERVAL_MS
 * catches what the events missed (a restart while a rollout held the
 * lock, or while the router was down). Only the address of a container
 * that already has a key changes: which containers serve is the
 * rollout's to say.
 */

/** How often every app is looked at besides Docker's events. */
export const PORT_FOLLOW_INTERVAL_MS = 10_000;

export interface PortFollowerOptions {
  /** The configuration's apps; only those with `routing: upstream` are followed. */
  apps: SlipwayConfig['apps'];
  docker: Docker;
  etcd: Etcd3;
  log?: (line: string) => void;
  /** Default PORT_FOLLOW_INTERVAL_MS. */
  intervalMs?: number;
  /** TTL of the claim on the apps. Default REGISTRAR_SESSION_TTL_S (3 s). */
  sessionTtlS?: number;
  onChange?: UpstreamFollowerOptions['onChange'];
}

/**
 * The keys whose container runs now at another address than the key says,
 * put to that address. Pure. A key whose container is gone or not running
 * stays as it is: a stopped container comes back (and is followed then),
 * or the next rollout replaces it.
 */
export function planPortFollow(current: readonly UpstreamKey[], containers: readonly AppContainer[]): UpstreamRewrite | null {
  const put: Record<string, string> = {};
  for (const key of current) {
    const container = containers.find((c) => c.id.slice(0, 12) === key.id && c.state === 'running' && c.address !== null);
    if (container && container.address !== key.address) put[key.key] = container.address!;
  }
  return Object.keys(put).length === 0 ? null : { put, remove: [] };
}

/** Starts following; with no `routing: upstream` app, starts nothing. Throws UnavailableError when etcd cannot be reached at start. */
export async function startPortFollower(options: PortFollowerOptions): Promise<UpstreamFollowerHandle> {
  const apps = Object.values(options.apps).filter((app) => app.routing === 'upstream');
  if (apps.length === 0) return { serving: () => [], reconcile: async () => {}, close: async () => {} };
  const runtime = new DockerRuntime(options.docker);
  const log = options.log ?? (() => {});
  const follower = await startUpstreamFollower({
    apps, etcd: options.etcd, role: 'port follower', intervalMs: options.intervalMs ?? PORT_FOLLOW_INTERVAL_MS,
    log, sessionTtlS: options.sessionTtlS, onChange: options.onChange,
    plan: async (app, _release, current) => (current.length === 0 ? null : planPortFollow(current, await runtime.listAppContainers(app.name, app.port))),
  });
  const followed = new Set(apps.map((app) => app.name));
  const events = watchDockerEvents({
    docker: options.docker,
    label: LABELS.app,
    actions: ['start'],
    log: (line) => log(`port follower: ${line}`),
    onConnected: () => void follower.reconcile(),
    onEvent: (e) => {
      const app = e.labels[LABELS.app];
      if (app && followed.has(app)) void follower.reconcile(app);
    },
  });
  return {
    serving: () => follower.serving(),
    reconcile: (app) => follower.reconcile(app),
    close: async () => {
      events.close();
      await follower.close();
    },
  };
}
