import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { InvalidInputError } from '@slipway/core/slipway-error';
import { isUpstreamAddress } from '@slipway/etcd/keys';
import { EmptyUpstreamError, TemplateError } from './router-errors.js';

/*
 * Everything the router writes, as pure functions of the live set: an
 * app's nginx file (routing: upstream, with or without the app's own
 * template; routing: dns) and its dnsmasq hosts file. Equal input renders
 * equal bytes, so an unchanged set writes and reloads nothing.
 */

/**
 * Names Slipway gives an app inside nginx. App names match
 * `[a-z0-9][a-z0-9-]{0,62}`, so they are safe in file names and upstream
 * names as they are; nginx variable names cannot hold `-`, and since app
 * names cannot hold `_`, replacing one with the other stays unique.
 */
export const nginxNames = {
  /** The upstream block, unique per app (nginx refuses duplicates across files). */
  upstream: (app: string) => `slipway_${app}`,
  /** `slipway-<app>.conf`: what the main config's `include conf.d/*.conf` picks up. */
  file: (app: string) => `slipway-${app}.conf`,
  path: (confDir: string, app: string) => join(confDir, `slipway-${app}.conf`),
  /** Files of other apps written by Slipway, to include beside a candidate. */
  isSlipwayFile: (name: string) => /^slipway-[a-z0-9][a-z0-9-]{0,62}\.conf$/.test(name),
};

/** Names Slipway gives a `routing: dns` app (an app name is a valid DNS label, and safe as a file name). */
export const dnsNames = {
  /** `<app>.<domain>`: what dnsmasq answers with the live containers' addresses. */
  host: (app: string, domain: string) => `${app}.${domain.replace(/\.$/, '')}`,
  /** The app's hosts file in dnsmasq's `--hostsdir`. */
  hostsFile: (hostsDir: string, app: string) => join(hostsDir, app),
  /**
   * The nginx variable holding the host name; a variable `proxy_pass` makes
   * nginx resolve at request time. One name for every app: each app's
   * `server` sets it per request, so apps add no variables to nginx's hash.
   */
  backendVariable: '$slipway_backend',
};

// routing: upstream ----------------------------------------------------------

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

/** Everything `renderNginxConf` needs, and nothing it must fetch. */
export interface RouteSnapshot {
  app: Pick<AppConfig, 'name' | 'listen' | 'server_name' | 'etcd_prefix'>;
  /** Live `host:port` addresses, in any order (rendering sorts them). */
  upstreams: readonly string[];
  /** The text of the app's own template, when it has one (`app.template`). */
  template?: string;
  /** With a front tier (`nginx.front`): where this, the back, listens instead of `app.listen` (see backListen). */
  back?: string;
}

/** Builds a snapshot, reading the app's template file when it names one. */
export async function routeSnapshot(app: AppConfig, upstreams: readonly string[], back?: string): Promise<RouteSnapshot> {
  if (app.template === undefined) return { app, upstreams, back };
  try {
    return { app, upstreams, back, template: await readFile(app.template, 'utf8') };
  } catch (err) {
    throw new TemplateError(`cannot read the nginx template of ${app.name} (${app.template}): ${(err as Error).message}`);
  }
}

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
  const listen = snapshot.back ?? app.listen;
  if (snapshot.template !== undefined) {
    return renderTemplate(snapshot.template, { app: app.name, upstream, servers, listen, server_name: serverName });
  }
  return `# Written by Slipway for app ${app.name}; regenerated from etcd ${app.etcd_prefix}/. Do not edit.
${upstreamBlock(upstream, servers)}

server {
${listenLines(listen, snapshot.back !== undefined)}
    server_name ${serverName};

${CONNECTION_HEADER}

${proxyLocation(upstream, snapshot.back !== undefined)}
}
`;
}

function upstreamBlock(name: string, servers: readonly string[]): string {
  return `upstream ${name} {
    ${servers.join('\n    ')}
    keepalive ${UPSTREAM_KEEPALIVE};
    keepalive_timeout ${UPSTREAM_KEEPALIVE_TIMEOUT};
}`;
}

function listenLines(listen: string, behindFront: boolean): string {
  return behindFront
    ? `    # The back of two tiers: only the front nginx (nginx.front) connects here, and clients connect to it.\n    listen ${listen};`
    : `    # No reuseport: with it, connections waiting in an old worker's accept queue are lost on reload.\n    listen ${listen};`;
}

// The front tier ------------------------------------------------------------

/**
 * The front nginx's file for an app (`nginx.front`): the app's `listen`
 * and `server_name`, forwarding everything to the back nginx on `back`
 * (the app's unix socket). Pure, and independent of the live containers,
 * so a deploy never changes it and the front, which holds the clients'
 * connections, is never reloaded by one. The back's reload closes only
 * the front's idle connections to it, and nginx sends a request that
 * failed on such a cached connection again on a fresh one (idempotent
 * requests only, as everywhere: a POST already sent is answered 502).
 */
export function renderFrontConf(app: Pick<AppConfig, 'name' | 'listen' | 'server_name'>, back: string): string {
  if (!/^unix:\/[^\s;{}'"\\]+$/.test(back)) throw new InvalidInputError(`not a unix socket address for the back nginx: ${JSON.stringify(back)}`);
  const upstream = nginxNames.upstream(app.name);
  const serverName = app.server_name.length > 0 ? app.server_name.join(' ') : '_';
  return `# Written by Slipway for app ${app.name}: the front tier, holding clients' connections. It forwards to the back nginx
# on ${back}; deploys reload only the back. Changes only with the app's listen or server_name. Do not edit.
${upstreamBlock(upstream, [`server ${back};`])}

server {
${listenLines(app.listen, false)}
    server_name ${serverName};

${CONNECTION_HEADER}

${proxyLocation(upstream, false, FRONT_NEXT_UPSTREAM)}
}
`;
}

/**
 * The front's only retry: a request whose connection to the back failed,
 * POSTs included. A back reload closes the front's idle connections to it,
 * and one the front had just sent a request on fails unread: nginx would
 * answer a POST 502 there (it cannot know the back did not act on it), but
 * the back's old worker closes only connections with no request in
 * progress, so nothing of it reached the app. Not on a timeout or a 502
 * from the back, which may come after the app acted.
 */
const FRONT_NEXT_UPSTREAM = 'error non_idempotent';

/** The addresses of the `server host:port;` lines of a rendered file: what a live upstream file routes to. */
export function renderedUpstreams(text: string): string[] {
  return [...text.matchAll(/^\s*server\s+([^\s;]+)[^;\n]*;/gm)].map((m) => m[1]!).filter(isUpstreamAddress);
}

/** The placeholders an app's template may use; see the package README. */
interface TemplateValues {
  app: string;
  upstream: string;
  /** One `server host:port;` line per live address. */
  servers: readonly string[];
  listen: string;
  server_name: string;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/**
 * Substitutes `{{ name }}` placeholders. Deliberately tiny: no logic, no
 * escapes. `{{ servers }}` expands to one line per address, each indented
 * like the placeholder's own line. An unknown name is an error (a typo must
 * not render silently), and so is a template without `{{ servers }}` (it
 * would route nowhere).
 */
function renderTemplate(template: string, values: TemplateValues): string {
  const names = new Set<string>();
  const out = template.split('\n').map((line, index) => line.replace(PLACEHOLDER, (_match, name: string) => {
    names.add(name);
    switch (name) {
      case 'app': return values.app;
      case 'upstream': return values.upstream;
      case 'listen': return values.listen;
      case 'server_name': return values.server_name;
      case 'servers': {
        const indent = /^\s*/.exec(line)?.[0] ?? '';
        return values.servers.join(`\n${indent}`);
      }
      default:
        throw new TemplateError(`line ${index + 1}: unknown placeholder {{ ${name} }} (known: app, upstream, servers, listen, server_name)`);
    }
  }));
  if (!names.has('servers')) throw new TemplateError('the template never uses {{ servers }}, so it would route to no container');
  return out.join('\n');
}

/**
 * The `Connection` header sent to the app: empty, so nginx keeps its
 * upstream connections alive, or `upgrade` when the client asks for a
 * WebSocket. One variable for every app, set per request in each app's
 * `server` (rewrite-module `set`/`if` at server level, not a `map`): nginx
 * builds every `map` with hash arrays of its own, which at 100 apps made
 * each `nginx -t` and each reload's parse take ~0.44 s against ~0.04 s
 * (`npm run bench:nginx-check`; `packages/router/README.md`, "Many apps").
 */
const CONNECTION_VARIABLE = '$slipway_connection';
const CONNECTION_HEADER = `    # Upstream keep-alive needs an empty Connection header; WebSocket upgrades still pass.
    set ${CONNECTION_VARIABLE} "";
    if ($http_upgrade) {
        set ${CONNECTION_VARIABLE} upgrade;
    }`;

/**
 * The `location /` block both routing modes render: the usual proxy
 * headers, HTTP/1.1 with keep-alive to the app (WebSocket upgrades still
 * pass), and a retry on another container for idempotent requests only
 * (`non_idempotent` is deliberately absent: a POST is never sent twice).
 */
function proxyLocation(target: string, behindFront: boolean, nextUpstream = 'error timeout http_502 http_503'): string {
  // Behind a front, the client is the front's to name: its headers pass on as they came (only the front can reach the back's socket).
  const [realIp, forwardedFor, proto] = behindFront
    ? ['$http_x_real_ip', '$http_x_forwarded_for', '$http_x_forwarded_proto']
    : ['$remote_addr', '$proxy_add_x_forwarded_for', '$scheme'];
  return `    location / {
        proxy_pass http://${target};
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP ${realIp};
        proxy_set_header X-Forwarded-For ${forwardedFor};
        proxy_set_header X-Forwarded-Proto ${proto};
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection ${CONNECTION_VARIABLE};
        proxy_next_upstream ${nextUpstream};
        proxy_connect_timeout 5s;
    }`;
}

/** Numeric order for IPv4 host:port, so 127.0.0.1:9 sorts before 127.0.0.1:10. */
function compareAddresses(a: string, b: string): number {
  const key = (s: string) => s.replace(/\d+/g, (d) => d.padStart(5, '0'));
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}

// routing: dns ---------------------------------------------------------------

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
  /** With a front tier: where this, the back, listens instead of `app.listen`. */
  back?: string;
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
  const backend = dnsNames.backendVariable;
  const serverName = app.server_name.length > 0 ? app.server_name.join(' ') : '_';
  return `# Written by Slipway for app ${app.name} (routing: dns): nginx resolves ${host} through ${dns.server}.
# Deploys change DNS only; this file changes with the configuration. Do not edit.
server {
${listenLines(snapshot.back ?? app.listen, snapshot.back !== undefined)}
    server_name ${serverName};

    # Each worker re-asks after valid=; dnsmasq answers the live containers (fed from etcd by Slipway).
    resolver ${dns.server} valid=${RESOLVER_VALID_S}s ipv6=off;
    resolver_timeout ${RESOLVER_TIMEOUT_S}s;
    set ${backend} ${host};

${CONNECTION_HEADER}

${proxyLocation(`${backend}:${app.port}`, snapshot.back !== undefined)}
}
`;
}

export interface DnsHosts {
  /** The hosts file: one `<ip> <app>.<domain>` line per address, sorted; empty when there is none. */
  text: string;
  /** The addresses answered, sorted. */
  ips: string[];
  /** Keys that cannot be answered by an A record for the app's port (another port, a host name), with why. */
  skipped: Array<{ address: string; reason: string }>;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * The dnsmasq hosts file of a `routing: dns` app from its live keys
 * (`ip:port`). Pure. An A record carries no port, so only addresses at the
 * app's own port can be answered (a dns app's containers are each
 * published on their own address at `app.port`); anything else is skipped
 * and reported, never written.
 */
export function renderDnsHosts(app: { name: string; port: number }, domain: string, addresses: readonly string[]): DnsHosts {
  const host = dnsNames.host(app.name, domain);
  const ips = new Set<string>();
  const skipped: DnsHosts['skipped'] = [];
  for (const address of addresses) {
    const [ip = '', port] = address.split(':');
    const m = IPV4.exec(ip);
    if (!m || m.slice(1).some((part) => Number(part) > 255)) skipped.push({ address, reason: 'not an IPv4 address' });
    else if (Number(port) !== app.port) skipped.push({ address, reason: `not at the app's port ${app.port}` });
    else ips.add(ip);
  }
  const sorted = [...ips].sort(compareIps);
  return { text: sorted.map((ip) => `${ip} ${host}\n`).join(''), ips: sorted, skipped };
}

export function compareIps(a: string, b: string): number {
  const key = (ip: string) => ip.split('.').map((p) => p.padStart(3, '0')).join('.');
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}

/** The IPs of a hosts file written by renderDnsHosts (what dnsmasq answers from it). */
export function parseDnsHosts(text: string): string[] {
  return text.split('\n').map((line) => line.trim().split(/\s+/)[0] ?? '').filter((ip) => IPV4.test(ip));
}
