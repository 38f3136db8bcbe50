import { readFile } from 'node:fs/promises';
import type { AppConfig } from '@slipway/config/types';
import { TemplateError } from './router-errors.js';

/** Everything `renderNginxConf` needs, and nothing it must fetch. */
export interface RouteSnapshot {
  app: Pick<AppConfig, 'name' | 'listen' | 'server_name' | 'etcd_prefix'>;
  /** Live `host:port` addresses, in any order (rendering sorts them). */
  upstreams: readonly string[];
  /** The text of the app's own template, when it has one (`app.template`). */
  template?: string;
}

/** Builds a snapshot, reading the app's template file when it names one. */
export async function routeSnapshot(app: AppConfig, upstreams: readonly string[]): Promise<RouteSnapshot> {
  if (app.template === undefined) return { app, upstreams };
  try {
    return { app, upstreams, template: await readFile(app.template, 'utf8') };
  } catch (err) {
    throw new TemplateError(`cannot read the nginx template of ${app.name} (${app.template}): ${(err as Error).message}`);
  }
}
