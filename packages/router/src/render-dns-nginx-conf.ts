import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { dnsNames } from './dns-names.js';
import { proxyLocation } from './proxy-location.js';
import { nginxNames } from './nginx-names.js';
import { TemplateError } from './router-errors.js';

/**
 * How long an nginx worker keeps an answer (`resolver … valid=`), in
 * seconds: how late a deploy or a dead container reaches nginx at most.
 * nginx counts in whole seconds and keeps an entry while `now <= resolved +
 * valid`, so an answer can be used for up to RESOLVER_VALID_S + 1 s: see
 * RESOLVER_CACHE_MS.
 */
export const RESOLVER_VALID_S = 1;
/** The longest an nginx worker may still use an address after DNS stopped answering it. */
export const RESOLVER_CACHE_MS = (RESOLVER_VALID_S + 1) * 1000;
/** How long a request waits for an answer before nginx gives up on it (502). dnsmasq on loopback answers in well under a millisecond. */
export const RESOLVER_TIMEOUT_S = 2;

export interface DnsRouteSnapshot {
  app: Pick<AppConfig, 'name' | 'listen' | 'server_name' | 'port' | 'template'>;
  dns: SlipwayConfig['dns'];
}

/**
 * The per-app nginx file of a `routing: dns` app. Pure, and independent of
 * which containers are live: nginx asks `dns.server` for `<app>.<domain>`
 * at request time (a variable in `proxy_pass` makes it), so the file is
 * written once (first deploy or a config change) and a deploy changes only
 * DNS. No `upstream` block: nginx 1.22 cannot re-resolve servers of one
 * (`server … resolve` needs 1.27.3), so there is no upstream keep-alive
 * pool either; every proxied request opens its own connection.
 */
export function renderDnsNginxConf(snapshot: DnsRouteSnapshot): string {
  const { app, dns } = snapshot;
  if (app.template !== undefined) {
    throw new TemplateError(`app ${app.name} uses routing: dns, which does not support an own nginx template yet (apps.${app.name}.template)`);
  }
  const host = dnsNames.host(app.name, dns.domain);
  const backend = dnsNames.backendVariable(app.name);
  const connection = nginxNames.connectionVariable(app.name);
  const serverName = app.server_name.length > 0 ? app.server_name.join(' ') : '_';
  return `# Written by Slipway for app ${app.name} (routing: dns): nginx resolves ${host} through ${dns.server}.
# Deploys change DNS only; this file changes with the configuration. Do not edit.
map $http_upgrade ${connection} {
    default "";
    ~.      upgrade;
}

server {
    # No reuseport: with it, connections waiting in an old worker's accept queue are lost on reload.
    listen ${app.listen};
    server_name ${serverName};

    # Each worker re-asks after valid=; dnsmasq answers the live containers (fed from etcd by Slipway).
    resolver ${dns.server} valid=${RESOLVER_VALID_S}s ipv6=off;
    resolver_timeout ${RESOLVER_TIMEOUT_S}s;
    set ${backend} ${host};

${proxyLocation(`${backend}:${app.port}`, connection)}
}
`;
}
