import type { AppConfig } from '@slipway/config/types';

/** A checked change of the proxy's routing, not yet live. */
export interface PreparedRoute {
  /** False when the proxy already routes exactly so: commit does nothing. */
  changed: boolean;
  /** routing: dns: whether the nginx file changes too (first deploy, configuration change); it was checked if so. */
  fileChanged?: boolean;
  /**
   * Makes it live. Resolves once requests no longer reach the previous
   * routing (`confirmed`), or after a settle time when that cannot be
   * observed; for routing: dns, once the DNS server answers the new set
   * (nginx's resolver caches may use the old one for RESOLVER_CACHE_MS
   * more: the plan's drain waits that out). On failure the previous
   * routing is kept and the error thrown.
   */
  commit(): Promise<{ reloaded: boolean; confirmed: boolean; ms: number; dnsMs?: number }>;
  discard(): Promise<void>;
}

/**
 * The proxy seam: how traffic is pointed at containers. `nginxRouteProxy`
 * renders and reloads an upstream block (routing: upstream);
 * `dnsRouteProxy` confirms the DNS answer instead and touches nginx only
 * when its file (independent of the containers) changes (routing: dns).
 */
export interface RouteProxy {
  /** Addresses the live routing sends the app's traffic to. */
  routed(app: AppConfig): Promise<string[]>;
  /** Renders and checks the routing for `addresses`; nothing live changes. */
  prepare(app: AppConfig, addresses: readonly string[]): Promise<PreparedRoute>;
}
