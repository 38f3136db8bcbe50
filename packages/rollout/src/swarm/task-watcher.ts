import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { SlipwayConfig } from '@slipway/config/types';
import { etcdKeys, type UpstreamKey } from '@slipway/etcd/keys';
import { startUpstreamFollower, type UpstreamFollowerHandle, type UpstreamRewrite } from '../upstream-follower.js';
import { liveEndpoints, SwarmRuntime, type AppTask } from './swarm-service.js';

/*
 * Tasks move; etcd follows. The swarm counterpart of the dns registrar,
 * run by `slipway router` (an upstream follower, upstream-follower.ts): when Swarm reschedules a task of the live
 * release (a node drained or lost, a container crashed, a task unhealthy
 * to Docker), the app's upstream keys are rewritten from the running tasks
 * that have a published port, and the router re-renders nginx from them.
 *
 * It polls the manager's task list rather than following its events: in
 * Docker 20.10 the event stream has service and node events but no task
 * events, so a node event would still need polling until the replacement
 * task runs and has its port; one listTasks per app per second is cheap
 * and also catches what happened while the watcher was away.
 */

/** How often each app's tasks are read. */
export const TASK_WATCH_INTERVAL_MS = 1_000;

export interface TaskWatcherOptions {
  /** The configuration's apps: every app is on the swarm (engine.type: swarm). */
  apps: SlipwayConfig['apps'];
  /** A client of engine.manager (managerClient). */
  manager: Docker;
  etcd: Etcd3;
  log?: (line: string) => void;
  /** Default TASK_WATCH_INTERVAL_MS. */
  intervalMs?: number;
  /** TTL of the claim on the apps. Default REGISTRAR_SESSION_TTL_S (3 s). */
  sessionTtlS?: number;
  /** Told of every rewrite (tests, the dashboard). */
  onChange?: (change: UpstreamRewrite & { app: string; at: number }) => void;
}

/** The apps it holds, reconcile now, close (claims given up at once; the keys stay as they are). */
export type TaskWatcherHandle = UpstreamFollowerHandle;
export type { UpstreamRewrite };

/**
 * The keys an app should have: one per running task of the live release
 * with a published port. Pure. Null when nothing is to change, and also
 * when no such task exists: the set is never emptied (the router would
 * keep the last file anyway, and a rollout or Swarm brings tasks back).
 */
export function planUpstreamRewrite(prefix: string, current: readonly UpstreamKey[], live: readonly AppTask[]): UpstreamRewrite | null {
  if (live.length === 0) return null;
  const desired = new Map(live.map((t) => [etcdKeys.upstream(prefix, t.id), t.address!]));
  const put = Object.fromEntries([...desired].filter(([key, address]) => current.find((u) => u.key === key)?.address !== address));
  const remove = current.filter((u) => !desired.has(u.key)).map((u) => u.key);
  return Object.keys(put).length === 0 && remove.length === 0 ? null : { put, remove };
}

/** Starts watching every app's tasks; throws UnavailableError when etcd cannot be reached at start. */
export function startTaskWatcher(options: TaskWatcherOptions): Promise<TaskWatcherHandle> {
  const swarm = new SwarmRuntime(options.manager);
  return startUpstreamFollower({
    apps: Object.values(options.apps), etcd: options.etcd, role: 'task watcher', intervalMs: options.intervalMs ?? TASK_WATCH_INTERVAL_MS,
    log: options.log, sessionTtlS: options.sessionTtlS, onChange: options.onChange,
    plan: async (app, release, current, say) => {
      const live = liveEndpoints((await swarm.appTasks(app.name, app.port)).filter((t) => t.release === release));
      if (live.length === 0 && current.length > 0) say(`no running task of release ${release}; its keys stay as they are`);
      return planUpstreamRewrite(app.etcd_prefix, current, live);
    },
  });
}
