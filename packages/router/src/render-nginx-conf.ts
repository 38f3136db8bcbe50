import { InvalidInputError } from '@slipway/core/slipway-error';
import { proxyLocation } from './proxy-location.js';
import { nginxNames } from './nginx-names.js';
import { renderTemplate } from './render-template.js';
import { EmptyUpstreamError } from './router-errors.js';
import type { RouteSnapshot } from './route-snapshot.js';
import { isUpstreamAddress } from './upstream-address.js';

/**
 * Idle keep-alive connections nginx keeps per worker to the app. Small: a
 * container is reached through docker-proxy, and an idle pool is cheap.
 */
export const UPSTREAM_KEEPALIVE = 16;
/**
 * How long an idle upstream connection is kept. Shorter than the idle
 * timeouts of common app servers (Node 5 s, gunicorn 2 s), so nginx drops
 * the connection before the app does and never reuses one being closed.
 */
export const UPSTREAM_KEEPALIVE_TIMEOUT = '1s';

/**
 * The per-app nginx file for a snapshot: pure, deterministic (addresses are
 * sorted, so equal sets render equal bytes and an unchanged set reloads
 * nothing). Throws EmptyUpstreamError rather than render an app offline.
 */
export function renderNginxConf(snapshot: RouteSnapshot): string {
  const { app } = snapshot;
  const addresses = [...new Set(snapshot.upstreams)].sort(compareAddresses);
  if (addresses.length === 0) throw new EmptyUpstreamError(app.name, app.etcd_prefix);
  const bad = addresses.find((a) => !isUpstreamAddress(a));
  if (bad !== undefined) throw new InvalidInputError(`not an upstream address (host:port): ${JSON.stringify(bad)}`);

  const upstream = nginxNames.upstream(app.name);
  const servers = addresses.map((a) => `server ${a};`);
  const serverName = app.server_name.length > 0 ? app.server_name.join(' ') : '_';
  if (snapshot.template !== undefined) {
    return renderTemplate(snapshot.template, { app: app.name, upstream, servers, listen: app.listen, server_name: serverName });
  }
  const connection = nginxNames.connectionVariable(app.name);
  return `# Written by Slipway for app ${app.name}; regenerated from etcd ${app.etcd_prefix}/. Do not edit.
upstream ${upstream} {
    ${servers.join('\n    ')}
    keepalive ${UPSTREAM_KEEPALIVE};
    keepalive_timeout ${UPSTREAM_KEEPALIVE_TIMEOUT};
}

# Upstream keep-alive needs an empty Connection header; WebSocket upgrades still pass.
map $http_upgrade ${connection} {
    default "";
    ~.      upgrade;
}

server {
    # No reuseport: with it, connections waiting in an old worker's accept queue are lost on reload.
    listen ${app.listen};
    server_name ${serverName};

${proxyLocation(upstream, connection)}
}
`;
}

/** Numeric order for IPv4 host:port, so 127.0.0.1:9 sorts before 127.0.0.1:10. */
function compareAddresses(a: string, b: string): number {
  const key = (s: string) => s.replace(/\d+/g, (d) => d.padStart(5, '0'));
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}
