import type { Etcd3 } from 'etcd3';
import type { SlipwayConfig } from '@slipway/config/types';
import { syncAppRoute, type RouteSyncResult } from './sync-app-route.js';

export interface RouterOptions {
  /** The configuration's apps; only those with `routing: upstream` are routed. */
  apps: SlipwayConfig['apps'];
  nginx: SlipwayConfig['nginx'];
  etcd: Etcd3;
  /** Progress and problems, one line each. Default: discarded. */
  log?: (line: string) => void;
}

/**
 * `slipway router --once`: every `routing: upstream` app, etcd → nginx, one
 * after the other (nginx reloads are not worth racing). Throws
 * UnavailableError when etcd cannot be reached; per-app failures are in
 * the results (the CLI exits 1 when one has `outcome: 'failed'`).
 */
export async function routerOnce(options: RouterOptions): Promise<RouteSyncResult[]> {
  const results: RouteSyncResult[] = [];
  for (const app of Object.values(options.apps)) {
    if (app.routing !== 'upstream') continue;
    results.push(await syncAppRoute({ app, nginx: options.nginx, etcd: options.etcd, log: options.log }));
  }
  return results;
}
