/**
 * Lease TTL of a routing: dns key (`<etcd_prefix>/<id12>` = `ip:port`):
 * renewed by the registrar while the container runs, so a container that
 * dies unnoticed, or a registrar that dies, drops out of etcd (and so out
 * of DNS) within this long without anyone cleaning up. Longer than
 * REGISTRAR_SESSION_TTL_S, so that a standby registrar takes over the keys
 * of a dead one before they expire.
 */
export const REGISTRATION_TTL_S = 10;
/** Lease TTL of a registrar's claim on its apps (`/slipway/apps/<app>/registrar`). */
export const REGISTRAR_SESSION_TTL_S = 3;
/** How long a rollout waits at its end for the registrar to take over the keys it switched (normally milliseconds). */
export const HAND_OVER_TIMEOUT_MS = 3_000;
