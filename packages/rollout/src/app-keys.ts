/**
 * etcd keys of an app besides its upstream prefix (`app.etcd_prefix`,
 * `<prefix>/<container-id-12>` = `host:port`). See DESIGN.md "etcd keys".
 */
export const appKeys = {
  /** JSON `{sha, image, job, at}` of what is live. */
  release: (app: string) => `/slipway/apps/${app}/release`,
  /** Kept history, newest last: `<prefix><15-digit ms timestamp>` = the same JSON. */
  releases: (app: string) => `/slipway/apps/${app}/releases/`,
  releaseEntry: (app: string, at: Date) => `/slipway/apps/${app}/releases/${String(at.getTime()).padStart(15, '0')}`,
  /** One rollout per app: held on a lease, so a crashed holder frees it by itself. */
  lock: (app: string) => `/slipway/locks/${app}`,
  /**
   * routing: dns: held by the registrar serving the app, on its session
   * lease; a rollout refuses to switch a dns app nobody registers.
   */
  registrar: (app: string) => `/slipway/apps/${app}/registrar`,
  /** routing: dns: one allocation of `dns.address_pool` at a time, across apps and workers (`_` is not allowed in app names). */
  addressLock: '/slipway/locks/_address-pool',
  /** The upstream key of a container. */
  upstream: (prefix: string, containerId: string) => `${prefix}/${containerId.slice(0, 12)}`,
};

/** Releases kept for rollback (their images are never deleted by Slipway). */
export const RELEASES_KEPT = 10;
