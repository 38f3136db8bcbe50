import type { Etcd3 } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { SlipwayError, UnavailableError, firstLine } from '@slipway/core/slipway-error';
import { etcdCall, etcdError, lastingWatch } from '@slipway/etcd/client';
import { etcdKeys, readUpstreams } from '@slipway/etcd/keys';
import { applyNginxConf, removeUnconfiguredApps } from './nginx-apply.js';
import type { NginxTarget } from './nginx-reload.js';
import { nginxNames, routeSnapshot } from './render.js';

/*
 * `slipway router`: confd's job, etcd → nginx, once or watching. The watch
 * loop (watchAppPrefixes) is shared with the DNS feed (dns-feed.ts).
 */

/** Changes closer together than this are applied once. */
export const ROUTER_DEBOUNCE_MS = 30;
/** Full re-sync period: catches anything a watch could miss, and hand edits of the files. */
export const ROUTER_RESYNC_INTERVAL_MS = 60_000;
/** Wait before retrying an app whose sync found etcd unreachable, or left it to a rollout. */
export const WATCH_RETRY_MS = 1_000;
/** Wait before retrying an app whose sync failed (check or reload): sooner than the resync, not in a tight loop. */
export const FAILED_RETRY_MS = 5_000;

export interface RouterOptions {
  /** The configuration's apps; only those with `routing: upstream` are routed. */
  apps: SlipwayConfig['apps'];
  /** With `batchMs` (router.batch_ms): switches within that window share one reload. */
  nginx: NginxTarget;
  etcd: Etcd3;
  /** Progress and problems, one line each. Default: discarded. */
  log?: (line: string) => void;
}

export interface WatchRouterOptions extends RouterOptions {
  /** Default ROUTER_DEBOUNCE_MS. */
  debounceMs?: number;
  /** Default ROUTER_RESYNC_INTERVAL_MS. */
  resyncIntervalMs?: number;
  /** Called after every app sync (for tests and the dashboard). */
  onSync?: (result: RouteSyncResult) => void;
}

export interface RouteSyncResult {
  app: string;
  /**
   * `applied`: nginx now serves the keys; `unchanged`: it already did;
   * `empty`: no live key, the previous file was kept; `failed`: see `error`
   * (template, check or reload), the previous file was kept; `deferred`: a
   * rollout holds the app's lock, and writes the file itself, or the keys
   * changed while the file was checked (the watch syncs the app again).
   */
  outcome: 'applied' | 'unchanged' | 'empty' | 'failed' | 'deferred';
  file: string;
  upstreams: string[];
  error?: SlipwayError;
}

export interface AppPrefixWatch {
  /** Stops watching; resolves once a sync in progress has finished. */
  close(): Promise<void>;
}

/** Stops watching with `close()`. */
export type RouterHandle = AppPrefixWatch;

/**
 * `slipway router`: syncs every `routing: upstream` app once (throws
 * UnavailableError if etcd cannot be reached at start), then watches each
 * app's prefix: a put or delete reaches nginx after `debounceMs` plus a
 * check and a reload. When the watch stream comes back after etcd was
 * away, every app is re-synced, since changes made meanwhile may not be
 * replayed (a restored etcd, a compacted revision). Up to
 * SYNC_CONCURRENCY apps sync at once, so their switches share reloads.
 */
export async function watchRouter(options: WatchRouterOptions): Promise<RouterHandle> {
  const log = options.log ?? (() => {});
  const apps = Object.values(options.apps).filter((app) => app.routing === 'upstream');
  const debounceMs = options.debounceMs ?? ROUTER_DEBOUNCE_MS;

  for (const result of await routerOnce(options)) options.onSync?.(result);

  const watch = watchAppPrefixes({
    apps, etcd: options.etcd, debounceMs, log, onSync: options.onSync, doing: 'syncing',
    resyncIntervalMs: options.resyncIntervalMs ?? ROUTER_RESYNC_INTERVAL_MS,
    sync: (app) => syncAppRoute({ app, nginx: options.nginx, etcd: options.etcd, log, watching: true }),
    retryAfterMs: (result) => (result.outcome === 'deferred' ? WATCH_RETRY_MS : result.outcome === 'failed' ? FAILED_RETRY_MS : null),
  });
  log(`router watching ${apps.length} app${apps.length === 1 ? '' : 's'}: ${apps.map((a) => `${a.name} (${a.etcd_prefix}/)`).join(', ')}`);

  return watch;
}

/**
 * `slipway router --once` (and the start of watching): the files of apps
 * no longer configured, and whose release is in this etcd, removed
 * (removeUnconfiguredApps), then every
 * `routing: upstream` app, etcd → nginx,
 * SYNC_CONCURRENCY at a time (results in the apps' order). Throws
 * UnavailableError when etcd cannot be reached; per-app failures are in
 * the results (the CLI exits 1 when one has `outcome: 'failed'`).
 */
export async function routerOnce(options: RouterOptions): Promise<RouteSyncResult[]> {
  const ours = (app: string) => etcdCall(`reading ${app}'s release`, () => options.etcd.get(etcdKeys.release(app)).exists());
  const removed = await removeUnconfiguredApps(options.nginx, new Set(Object.keys(options.apps)), ours, options.log ?? (() => {}));
  const apps = Object.values(options.apps).filter((app) => app.routing === 'upstream');
  const results: RouteSyncResult[] = [];
  await inTurns(apps, async (app, i) => {
    results[i] = await syncAppRoute({ app, nginx: options.nginx, etcd: options.etcd, log: options.log });
  });
  // A removed app's file whose reload failed: nginx may serve it still, which `--once` must not call success.
  for (const { app, file, reloadError } of removed) {
    if (reloadError) results.push({ app, outcome: 'failed', file, upstreams: [], error: reloadError });
  }
  return results;
}

/**
 * Apps synced at once. Side by side, their nginx switches share reloads
 * (reloadNginx batches whatever lands within `router.batch_ms`); one after
 * the other, 100 apps re-synced after an etcd outage would each pay their
 * own reload, at least batch_ms apart, each resetting every app's idle
 * keep-alive connections.
 */
export const SYNC_CONCURRENCY = 8;

/** Runs `fn` on each item (and its index), at most SYNC_CONCURRENCY at a time; rejects with the first failure once all have settled. */
async function inTurns<T>(items: readonly T[], fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const outcomes = await Promise.allSettled(Array.from({ length: Math.min(SYNC_CONCURRENCY, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      await fn(items[index]!, index);
    }
  }));
  const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * One app, etcd → nginx, once. Throws only UnavailableError (etcd cannot be
 * reached: nothing was touched, try again later); every other problem is
 * reported in the result.
 *
 * While a rollout holds the app's lock the file is the rollout's: it
 * switches the keys and writes the file itself, and a sync that read the
 * keys before its switch would rename a stale file over its new one, with
 * the old containers about to be drained and stopped. So the lock is read
 * with the keys, and again between the check and the rename; a rollout
 * takes the lock long before its switch (its containers start and pass
 * their health checks in between).
 */
async function syncAppRoute(options: { app: AppConfig; nginx: NginxTarget; etcd: Etcd3; log?: (line: string) => void; watching?: boolean }): Promise<RouteSyncResult> {
  const { app, nginx, etcd } = options;
  const log = options.log ?? (() => {});
  const file = nginxNames.path(nginx.conf_dir, app.name);
  const rolloutHolds = () => etcdCall(`reading ${etcdKeys.lock(app.name)}`, () => etcd.get(etcdKeys.lock(app.name)).exists());
  const deferred = (why = `a rollout holds the app and writes ${file} itself; ${options.watching ? 'syncing once it ends' : 'left to it'}`): RouteSyncResult => {
    log(`${app.name}: ${why}`);
    return { app: app.name, outcome: 'deferred', file, upstreams: [] };
  };
  const [{ live, invalid }, busy] = await Promise.all([readUpstreams(etcd, app.etcd_prefix), rolloutHolds()]);
  if (busy) return deferred();
  for (const entry of invalid) log(`${app.name}: ignoring ${entry.key} = ${JSON.stringify(entry.address.slice(0, 80))}: not a host:port`);
  const upstreams = live.map((u) => u.address);
  if (upstreams.length === 0) {
    log(`${app.name}: no live upstream under ${app.etcd_prefix}/, keeping ${file} as it is`);
    return { app: app.name, outcome: 'empty', file, upstreams };
  }
  try {
    // Right before the rename: no rollout holds the app, and the keys are still the ones read. A whole rollout (lock,
    // switch, file, drain, stop, unlock) may fit in a slow check; its file must not be replaced by one of the keys
    // read before it, which name the containers it stopped.
    const seen = keysOf(live);
    let moved = false;
    const stillSo = async () => {
      if (await rolloutHolds()) return false;
      moved = keysOf((await readUpstreams(etcd, app.etcd_prefix)).live) !== seen;
      return !moved;
    };
    const result = await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, upstreams), beforeCommit: stillSo });
    if (result.withheld) return moved ? deferred(`its keys changed while ${file} was checked (a rollout came and went): not put in place; ${options.watching ? 'synced again from the keys as they are now' : 'left to the next sync'}`) : deferred();
    if (!result.changed && !result.reload) return { app: app.name, outcome: 'unchanged', file, upstreams };
    if (!result.changed) {
      log(`${app.name}: nginx had not been asked to read ${file} since it was put in place (a switch whose reload never came); reloaded (${result.reload!.outcome} in ${result.reload!.ms} ms)`);
      return { app: app.name, outcome: 'applied', file, upstreams };
    }
    const how = result.reload ? ` (nginx reload ${result.reload.outcome} in ${result.reload.ms} ms)` : ' (already applied)';
    log(`${app.name}: ${file} now routes to ${upstreams.join(', ')}${how}`);
    return { app: app.name, outcome: 'applied', file, upstreams };
  } catch (err) {
    if (err instanceof UnavailableError) throw err;
    const error = err instanceof SlipwayError ? err : new SlipwayError('router_failed', (err as Error).message, { cause: err });
    log(`${app.name}: ${error.code}: ${error.message} (keeping the previous ${file})`);
    return { app: app.name, outcome: 'failed', file, upstreams, error };
  }
}

/** The upstream keys as one string, to tell whether they changed. */
const keysOf = (live: ReadonlyArray<{ key: string; address: string }>) => live.map((u) => `${u.key}=${u.address}`).join('\n');

export interface WatchAppPrefixesOptions<R> {
  apps: readonly AppConfig[];
  etcd: Etcd3;
  /** Brings one app's derived state (nginx file, hosts file) in line with its keys. */
  sync: (app: AppConfig) => Promise<R>;
  /** Changes closer together than this are applied once. */
  debounceMs: number;
  /** Full re-sync period: catches anything a watch could miss, and hand edits of the files. */
  resyncIntervalMs: number;
  /** What the syncs do, for log lines: "syncing", "feeding DNS for". */
  doing: string;
  /** Milliseconds after which an app whose sync gave this result is synced again (null: at its next change or resync). */
  retryAfterMs?: (result: R) => number | null;
  log: (line: string) => void;
  onSync?: (result: R) => void;
}

/**
 * confd's loop, for any state derived from the keys under each app's
 * `etcd_prefix`: a put or delete marks the app dirty, dirty apps are synced
 * after `debounceMs`, up to SYNC_CONCURRENCY at a time (an app is never
 * synced twice at once), an unreachable etcd is retried, and every (re)connection of a
 * watch re-syncs its app, since changes made while etcd was away may not
 * be replayed (a restored etcd, a compacted revision).
 */
export function watchAppPrefixes<R>(options: WatchAppPrefixesOptions<R>): AppPrefixWatch {
  const { apps, log } = options;
  const byName = new Map(apps.map((app) => [app.name, app]));
  const dirty = new Set<string>();
  /** At most one retry per app waits: a sync that keeps failing is retried on its own clock, however often it is asked for. */
  const retries = new Map<string, NodeJS.Timeout>();
  let closed = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  const runPending = async () => {
    while (dirty.size > 0 && !closed) {
      const names = [...dirty];
      dirty.clear();
      await inTurns(names, async (name) => {
        if (closed) return;
        try {
          // Not `onSync?.(await …)`: optional chaining would skip the sync itself when there is no onSync.
          const result = await options.sync(byName.get(name)!);
          options.onSync?.(result);
          const retry = options.retryAfterMs?.(result) ?? null;
          if (retry !== null) retryLater(name, retry);
        } catch (err) {
          const error = err instanceof UnavailableError ? err : etcdError(err, `${options.doing} ${name}`);
          log(`${name}: ${error.message}; retrying in ${WATCH_RETRY_MS} ms`);
          retryLater(name, WATCH_RETRY_MS);
        }
      });
    }
  };
  const retryLater = (name: string, ms: number) => {
    clearTimeout(retries.get(name));
    const timer = setTimeout(() => {
      retries.delete(name);
      markDirty(name);
    }, ms);
    timer.unref();
    retries.set(name, timer);
  };
  const markDirty = (name: string) => {
    if (closed) return;
    dirty.add(name);
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      // Never left rejected (a log or onSync that threw): every later sync chains on it, and would be skipped for good.
      running = running.then(runPending).catch((err: unknown) => {
        try {
          log(`resync failed: ${firstLine(err)}; the next change re-syncs`);
        } catch {
          // The log is what threw: nothing more to say.
        }
      });
    }, options.debounceMs);
  };

  const lost = new Set<string>();
  const watchers = apps.map((app) => lastingWatch(
    () => options.etcd.watch().prefix(`${app.etcd_prefix}/`).watcher(),
    (watcher) => watcher
      .on('put', () => markDirty(app.name))
      .on('delete', () => markDirty(app.name))
      .on('connected', () => {
        if (lost.delete(app.name)) log(`${app.name}: etcd watch re-established; re-syncing`);
        markDirty(app.name);
      })
      .on('disconnected', (err: Error) => {
        if (!lost.has(app.name)) log(`${app.name}: etcd watch lost (${firstLine(err)}); reconnecting`);
        lost.add(app.name);
      }),
    ({ err, retryInMs }) => {
      log(`${app.name}: etcd ended the watch (${firstLine(err)}); watching again in ${retryInMs} ms`);
      lost.add(app.name);
    },
  ));
  const resync = setInterval(() => apps.forEach((app) => markDirty(app.name)), options.resyncIntervalMs);
  resync.unref();

  return {
    close: async () => {
      closed = true;
      clearInterval(resync);
      for (const timer of retries.values()) clearTimeout(timer);
      if (timer) clearTimeout(timer);
      await Promise.all(watchers.map((w) => w.cancel().catch(() => {})));
      await running;
    },
  };
}
