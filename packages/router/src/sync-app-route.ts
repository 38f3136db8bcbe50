import type { Etcd3 } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { applyNginxConf } from './apply-nginx-conf.js';
import { nginxNames } from './nginx-names.js';
import { readUpstreams } from './read-upstreams.js';
import { routeSnapshot } from './route-snapshot.js';

export interface SyncAppRouteOptions {
  app: AppConfig;
  nginx: SlipwayConfig['nginx'];
  etcd: Etcd3;
  log?: (line: string) => void;
}

export interface RouteSyncResult {
  app: string;
  /**
   * `applied`: nginx now serves the keys; `unchanged`: it already did;
   * `empty`: no live key, the previous file was kept; `failed`: see `error`
   * (template, check or reload), the previous file was kept.
   */
  outcome: 'applied' | 'unchanged' | 'empty' | 'failed';
  file: string;
  upstreams: string[];
  error?: SlipwayError;
}

/**
 * One app, etcd → nginx, once. Throws only UnavailableError (etcd cannot be
 * reached: nothing was touched, try again later); every other problem is
 * reported in the result.
 */
export async function syncAppRoute(options: SyncAppRouteOptions): Promise<RouteSyncResult> {
  const { app, nginx } = options;
  const log = options.log ?? (() => {});
  const file = nginxNames.path(nginx.conf_dir, app.name);
  const { live, invalid } = await readUpstreams(options.etcd, app.etcd_prefix);
  for (const entry of invalid) log(`${app.name}: ignoring ${entry.key} = ${JSON.stringify(entry.address.slice(0, 80))}: not a host:port`);
  const upstreams = live.map((u) => u.address);
  if (upstreams.length === 0) {
    log(`${app.name}: no live upstream under ${app.etcd_prefix}/, keeping ${file} as it is`);
    return { app: app.name, outcome: 'empty', file, upstreams };
  }
  try {
    const result = await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, upstreams) });
    if (!result.changed) return { app: app.name, outcome: 'unchanged', file, upstreams };
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
