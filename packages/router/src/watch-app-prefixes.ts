import type { Etcd3, Watcher } from 'etcd3';
import type { AppConfig } from '@slipway/config/types';
import { UnavailableError, firstLine } from '@slipway/core/slipway-error';
import { etcdError } from './etcd-error.js';

/** Wait before retrying an app whose sync found etcd unreachable. */
export const WATCH_RETRY_MS = 1_000;

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
  log: (line: string) => void;
  onSync?: (result: R) => void;
}

export interface AppPrefixWatch {
  /** Stops watching; resolves once a sync in progress has finished. */
  close(): Promise<void>;
}

/**
 * confd's loop, for any state derived from the keys under each app's
 * `etcd_prefix`: a put or delete marks the app dirty, dirty apps are synced
 * after `debounceMs`, one sync at a time (nginx reloads are not worth
 * racing), an unreachable etcd is retried, and every (re)connection of a
 * watch re-syncs its app, since changes made while etcd was away may not
 * be replayed (a restored etcd, a compacted revision).
 */
export function watchAppPrefixes<R>(options: WatchAppPrefixesOptions<R>): AppPrefixWatch {
  const { apps, log } = options;
  const byName = new Map(apps.map((app) => [app.name, app]));
  const dirty = new Set<string>();
  let closed = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  const runPending = async () => {
    while (dirty.size > 0 && !closed) {
      const names = [...dirty];
      dirty.clear();
      for (const name of names) {
        try {
          // Not `onSync?.(await …)`: optional chaining would skip the sync itself when there is no onSync.
          const result = await options.sync(byName.get(name)!);
          options.onSync?.(result);
        } catch (err) {
          const error = err instanceof UnavailableError ? err : etcdError(err, `${options.doing} ${name}`);
          log(`${name}: ${error.message}; retrying in ${WATCH_RETRY_MS} ms`);
          setTimeout(() => markDirty(name), WATCH_RETRY_MS).unref();
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
    }, options.debounceMs);
  };

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
  const resync = setInterval(() => apps.forEach((app) => markDirty(app.name)), options.resyncIntervalMs);
  resync.unref();

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
