import type { AppConfig } from '@slipway/config/types';

/** A checked change of the proxy's routing, not yet live. */
export interface PreparedRoute {
  /** False when the proxy already routes exactly so: commit does nothing. */
  changed: boolean;
  /**
   * Makes it live. Resolves once requests no longer reach the previous
   * routing (`confirmed`), or after a settle time when that cannot be
   * observed. On failure the previous routing is kept and the error thrown.
   */
  commit(): Promise<{ reloaded: boolean; confirmed: boolean; ms: number }>;
  discard(): Promise<void>;
}

/**
 * The proxy seam: how traffic is pointed at containers. `nginxRouteProxy`
 * renders and reloads an upstream block (routing: upstream); the planned
 * DNS mode will update records instead and need no reload.
 */
export interface RouteProxy {
  /** Addresses the live routing sends the app's traffic to. */
  routed(app: AppConfig): Promise<string[]>;
  /** Renders and checks the routing for `addresses`; nothing live changes. */
  prepare(app: AppConfig, addresses: readonly string[]): Promise<PreparedRoute>;
}
