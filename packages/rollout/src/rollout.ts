import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { SlipwayConfig } from '@slipway/config/types';
import { InvalidInputError } from '@slipway/core/slipway-error';
import { assertAppName, isSha, quote } from '@slipway/core/validate';
import { dockerRuntime } from './docker-runtime.js';
import { etcdReleaseStore } from './etcd-release-store.js';
import { executeRollout } from './execute-rollout.js';
import { dnsRouteProxy } from './dns-route-proxy.js';
import { nginxRouteProxy } from './nginx-route-proxy.js';
import { UnsupportedRoutingError } from './rollout-errors.js';
import type { RolloutRequest, RolloutResult } from './rollout-types.js';

export interface RolloutOptions extends RolloutRequest {
  nginx: SlipwayConfig['nginx'];
  docker: Docker;
  etcd: Etcd3;
}

/** An image reference as `docker run` takes it; nothing that could read as an option or hold a space. */
const IMAGE = /^[a-z0-9][a-z0-9._\/:@-]{0,254}$/i;

/**
 * Zero-downtime rollout of `image` for one app. routing: upstream: lock →
 * start `replicas` labelled containers → health-check each → check the
 * candidate nginx config → switch the etcd keys and record the release in
 * one transaction → apply nginx → drain the old containers by observation →
 * stop and remove them. routing: dns (needs `dns`): the same, with each
 * container on its own address of `dns.address_pool`, the keys switched on
 * a lease the registrar takes over, the DNS answer confirmed instead of a
 * reload, and nginx's resolver caches waited out before the drain. See
 * README.md for the steps and error codes.
 *
 * Throws UnavailableError (etcd or Docker unreachable: retry), or a
 * SlipwayError with code `health_failed`, `nginx_check_failed`,
 * `nginx_reload_failed`, `template_invalid`, `cancelled`, `unsupported`,
 * `image_not_found`, `container_start_failed`, `lock_timeout`,
 * `invalid_input`, `address_pool_exhausted`. Whatever it throws, the previous release still serves
 * with its nginx file and etcd keys as they were, and no new container is
 * left behind (when Docker can be reached to remove it).
 */
export async function rollout(options: RolloutOptions): Promise<RolloutResult> {
  assertAppName(options.app.name, 'app');
  if (options.sha !== null && !isSha(options.sha)) throw new InvalidInputError(`sha must be 40 lowercase hex digits or null, got ${quote(options.sha)}`);
  if (!IMAGE.test(options.image)) throw new InvalidInputError(`not an image reference: ${quote(options.image)}`);
  if (typeof options.job !== 'string' || options.job.length === 0 || options.job.length > 200) throw new InvalidInputError(`job must be a non-empty string, got ${quote(options.job)}`);
  let proxy;
  if (options.app.routing === 'dns') {
    if (!options.dns) throw new UnsupportedRoutingError(options.app.name, 'dns', 'but the rollout was given no `dns` settings (pass `dns: config.dns`)');
    proxy = dnsRouteProxy(options.nginx, options.dns);
  } else {
    proxy = nginxRouteProxy(options.nginx);
  }
  return executeRollout({ runtime: dockerRuntime(options.docker), store: etcdReleaseStore(options.etcd), proxy }, options);
}
