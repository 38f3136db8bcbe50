import type { Watcher } from 'etcd3';
import { UnavailableError, firstLine } from '@slipway/core/slipway-error';
import { etcdError } from './etcd-error.js';
import { routerOnce, type RouterOptions } from './router-once.js';
import { syncAppRoute, type RouteSyncResult } from './sync-app-route.js';

/** Changes closer together than this are applied once. */
export const ROUTER_DEBOUNCE_MS = 30;
/** Full re-sync period: catches anything a watch could miss, and hand edits of the files. */
export const ROUTER_RESYNC_INTERVAL_MS = 60_000;
/** Wait before retrying an app whose sync found etcd unreachable. */
export const ROUTER_RETRY_MS = 1_000;

export interface WatchRouterOptions extends RouterOptions {
  /** Default ROUTER_DEBOUNCE_MS. */
  debounceMs?: number;
  /** Default ROUTER_RESYNC_INTERVAL_MS. */
  resyncIntervalMs?: number;
  /** Called after every app sync (for tests and the dashboard). */
  onSync?: (result: RouteSyncResult) => void;
}

export interface RouterHandle {
  /** Stops watching; resolves once a sync in progress has finished. */
  close(): Promise<void>;
}

/**
 * `slipway router`: confd's job. Syncs every `routing: upstream` app once
 * (throws UnavailableError if etcd cannot be reached at start), then
 * watches each app's prefix: a put or delete reaches nginx after
 * `debounceMs` plus a check and a reload. When the watch stream comes back
 * after etcd was away, every app is re-synced, since changes made
 * meanwhile may not be replayed (a restored etcd, a compacted revision).
 * Syncs run one at a time: nginx reloads are not worth racing.
 */
export async function watchRouter(options: WatchRouterOptions): Promise<RouterHandle> {
  const log = options.log ?? (() => {});
  const apps = Object.values(options.apps).filter((app) => app.routing === 'upstream');
  const debounceMs = options.debounceMs ?? ROUTER_DEBOUNCE_MS;

  for (const result of await routerOnce(options)) options.onSync?.(result);

  const dirty = new Set<string>();
  let closed = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  const runPending = async () => {
    while (dirty.size > 0 && !closed) {
      const names = [...dirty];
      dirty.clear();
      for (const name of names) {
        const app = options.apps[name]!;
        try {
          // Not `onSync?.(await …)`: optional chaining would skip the sync itself when there is no onSync.
          const result = await syncAppRoute({ app, nginx: options.nginx, etcd: options.etcd, log });
          options.onSync?.(result);
        } catch (err) {
          const error = err instanceof UnavailableError ? err : etcdError(err, `syncing ${name}`);
          log(`${name}: ${error.message}; retrying in ${ROUTER_RETRY_MS} ms`);
          setTimeout(() => markDirty(name), ROUTER_RETRY_MS).unref();
        }
      }
    }
  };
  const markDirty = (name: string) => {
    if (closed) return;
    dirty.add(name);
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      running = running.then(runPending);
    }, debounceMs);
  };

  // Every 'connected' (the first one included) re-syncs the app: that covers
  // changes between the first sync and the watch's start, and changes made
  // while etcd was away that a resumed watch may not replay.
  const lost = new Set<string>();
  const watchers: Watcher[] = apps.map((app) => options.etcd.watch().prefix(`${app.etcd_prefix}/`).watcher()
    .on('put', () => markDirty(app.name))
    .on('delete', () => markDirty(app.name))
    .on('connected', () => {
      if (lost.delete(app.name)) log(`${app.name}: etcd watch re-established; re-syncing`);
      markDirty(app.name);
    })
    .on('disconnected', (err: Error) => {
      if (!lost.has(app.name)) log(`${app.name}: etcd watch lost (${firstLine(err)}); reconnecting`);
      lost.add(app.name);
    })
    .on('error', (err: Error) => log(`${app.name}: etcd watch error: ${firstLine(err)}`)));

  const resync = setInterval(() => apps.forEach((app) => markDirty(app.name)), options.resyncIntervalMs ?? ROUTER_RESYNC_INTERVAL_MS);
  resync.unref();
  log(`router watching ${apps.length} app${apps.length === 1 ? '' : 's'}: ${apps.map((a) => `${a.name} (${a.etcd_prefix}/)`).join(', ')}`);

  return {
    close: async () => {
      closed = true;
      clearInterval(resync);
      if (timer) clearTimeout(timer);
      await Promise.all(watchers.map((w) => w.cancel().catch(() => {})));
      await running;
    },
  };
}
