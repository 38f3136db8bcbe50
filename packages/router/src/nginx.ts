/**
 * `@slipway/router/nginx`: an app's nginx file, for the rollout and
 * `slipway status`: its name, its rendering from the live set, a checked
 * candidate to commit (atomic rename, observed reload) or discard, and the
 * observations a rollout waits on (nginx's listening workers, the
 * connections an old container still carries). Failures carry their
 * codes (`nginx_check_failed`, `nginx_conf_broken`, `nginx_check_not_run`,
 * `nginx_reload_failed`, `template_invalid`, `empty_upstream`).
 */
export { nginxNames, renderedUpstreams, renderFrontConf, renderNginxConf, routeSnapshot, type RouteSnapshot } from './render.js';
export { prepareNginxConf, reloadIfBehind, type PreparedNginxConf } from './nginx-apply.js';
export { renderHarness } from './nginx-check.js';
export { clientConnectionsHeld, DEFAULT_BATCH_MS, listenerHolders, RELOAD_SETTLE_MS, reloadSignalledFor, retiringWorkers, type NginxTarget } from './nginx-reload.js';
export { backListen, frontTarget } from './tiers.js';
export { connectionCounts } from './tcp-sockets.js';
