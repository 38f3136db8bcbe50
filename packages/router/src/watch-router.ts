import { routerOnce, type RouterOptions } from './router-once.js';
import { syncAppRoute, type RouteSyncResult } from './sync-app-route.js';
import { watchAppPrefixes, type AppPrefixWatch } from './watch-app-prefixes.js';

/** Changes closer together than this are applied once. */
export const ROUTER_DEBOUNCE_MS = 30;
/** Full re-sync period: catches anything a watch could miss, and hand edits of the files. */
export const ROUTER_RESYNC_INTERVAL_MS = 60_000;

export interface WatchRouterOptions extends RouterOptions {
  /** Default ROUTER_DEBOUNCE_MS. */
  debounceMs?: number;
  /** Default ROUTER_RESYNC_INTERVAL_MS. */
  resyncIntervalMs?: number;
  /** Called after every app sync (for tests and the dashboard). */
  onSync?: (result: RouteSyncResult) => void;
}

/** Stops watching with `close()`. */
export type RouterHandle = AppPrefixWatch;

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

  const watch = watchAppPrefixes({
    apps, etcd: options.etcd, debounceMs, log, onSync: options.onSync, doing: 'syncing',
    resyncIntervalMs: options.resyncIntervalMs ?? ROUTER_RESYNC_INTERVAL_MS,
    sync: (app) => syncAppRoute({ app, nginx: options.nginx, etcd: options.etcd, log }),
  });
  log(`router watching ${apps.length} app${apps.length === 1 ? '' : 's'}: ${apps.map((a) => `${a.name} (${a.etcd_prefix}/)`).join(', ')}`);

  return watch;
}
