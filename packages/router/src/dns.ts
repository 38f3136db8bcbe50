/**
 * `@slipway/router/dns`: routing: dns on the router's side, for the
 * rollout, its registrar and `slipway status`: names, the app's nginx file
 * (independent of the containers), what the DNS server answers, and the
 * DNS half of `slipway router` (dnsmasq and its feed from etcd).
 */
export { compareIps, dnsNames, renderDnsNginxConf, RESOLVER_CACHE_MS } from './render.js';
export { dnsmasqPaths, resolveHost } from './dns-server.js';
export { startDnsRouter, watchDnsHosts, type DnsHostsFeed, type DnsRouterHandle } from './dns-feed.js';
