import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SlipwayConfig } from '@slipway/config/types';
import { nginxNames, prepareNginxConf, RELOAD_SETTLE_MS, renderedUpstreams, renderNginxConf, routeSnapshot } from '@slipway/router/nginx';
import type { RouteProxy } from './route-proxy.js';

/** The proxy seam over nginx: the router's render, candidate check, atomic rename and observed reload. */
export function nginxRouteProxy(nginx: SlipwayConfig['nginx']): RouteProxy {
  return {
    async routed(app) {
      const text = await readFile(nginxNames.path(nginx.conf_dir, app.name), 'utf8').catch(() => '');
      return renderedUpstreams(text);
    },

    async prepare(app, addresses) {
      const content = renderNginxConf(await routeSnapshot(app, addresses));
      const prepared = await prepareNginxConf({ nginx, app, content });
      return {
        changed: prepared.changed,
        discard: () => prepared.discard(),
        commit: async () => {
          const started = Date.now();
          const result = await prepared.commit();
          if (result.reload) {
            const confirmed = result.reload.outcome === 'confirmed';
            return { reloaded: true, confirmed, ms: Date.now() - started };
          }
          // Someone else (the router) wrote the same file first; its reload may still be under way.
          await sleep(RELOAD_SETTLE_MS);
          return { reloaded: false, confirmed: false, ms: Date.now() - started };
        },
      };
    },
  };
}
