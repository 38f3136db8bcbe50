import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { AppConfig, EngineConfig, SlipwayConfig } from '@slipway/config/types';
import { InvalidInputError } from '@slipway/core/slipway-error';
import { assertAppName, isSha, quote } from '@slipway/core/validate';
import { DockerRuntime } from './container-runtime.js';
import type { DrainResult } from './drain-connections.js';
import { executeRollout, executeStrayRemoval } from './execute-rollout.js';
import { EtcdReleaseStore, type ReleaseRecord } from './release-store.js';
import { DnsRouteProxy, NginxRouteProxy, type RouteProxy } from './route-proxy.js';
import { UnsupportedRoutingError } from './rollout-errors.js';
import { executeSwarmRollout } from './swarm/swarm-rollout.js';
import { SwarmRuntime } from './swarm/swarm-service.js';
import type { NginxTarget } from '@slipway/router/nginx';

/** Progress milestones, in order, for the worker's job state. */
export type RolloutStepName = 'start' | 'health' | 'switch' | 'drain' | 'done';

/** What a rollout needs besides its seams (see `rollout` for the public options). */
export interface RolloutRequest {
  app: AppConfig;
  image: string;
  /** Full 40-hex commit, or null for an image deploy. */
  sha: string | null;
  /** The job id: recorded as the release and as the `slipway.release` label. */
  job: string;
  /** Every line of progress, for the job log shown live. Default: discarded. */
  log?: (line: string) => void;
  onStep?: (step: RolloutStepName) => void;
  /**
   * Called right before the switch is sent to etcd (past the step
   * `switch`'s nginx check, and the rollout's last look at `signal`): from
   * then on the release may be live whatever the rollout answers.
   */
  onSwitching?: () => void;
  /**
   * Cancels the rollout before its switch: its containers are removed and
   * a CancelledError (`cancelled`) thrown. Ignored from the switch on: a
   * cutover is never abandoned half way.
   */
  signal?: AbortSignal;
  /** How long to wait for another rollout of the app. Default LOCK_WAIT_MS (15 min). */
  lockWaitMs?: number;
  /** TTL of the lock's lease. Default LOCK_TTL_S (5 s). */
  lockTtlS?: number;
  /** The configuration's `dns` settings: required for an app with routing: dns, unused otherwise. */
  dns?: SlipwayConfig['dns'];
  /**
   * Images of the app's jobs still to run (a queued rollback, an image
   * deploy): kept when this rollout prunes the images of releases no
   * longer kept, which they would otherwise find gone. As a function, asked
   * when pruning (a rollback queued while this rollout ran is one); null
   * from it (they could not be read) prunes nothing.
   */
  keepImages?: readonly string[] | (() => Promise<readonly string[] | null>);
}

/** The images `keepImages` names now; null when they could not be read (then nothing is pruned). */
export async function imagesToKeep(keepImages: RolloutOptions['keepImages']): Promise<readonly string[] | null> {
  if (typeof keepImages !== 'function') return keepImages ?? [];
  return keepImages().catch(() => null);
}

export interface RolloutResult {
  app: string;
  release: ReleaseRecord;
  /** What was live before, or null for a first release. */
  previous: ReleaseRecord | null;
  /** The new containers, now live. */
  containers: Array<{ id: string; address: string }>;
  /** Old containers stopped and removed after the drain. */
  stopped: string[];
  /** Stray containers of unfinished rollouts removed before starting. */
  strays: string[];
  /** Old containers that could not be stopped (Docker went away after the switch); the next rollout removes them. */
  leftovers: string[];
  /** Null when nothing was serving before. */
  drain: DrainResult | null;
  /**
   * Milliseconds per phase: `lock` waiting for and taking the lock, `plan`
   * reading Docker, etcd and nginx and planning (and removing strays),
   * `switch` the candidate check + etcd transaction + nginx apply until the
   * old workers stopped accepting, `stop` stopping and removing the old
   * containers (for routing: dns, `switch` ends when the DNS server
   * answers the new set, and `drain` includes the wait for nginx's
   * resolver caches).
   */
  timings: { lock: number; plan: number; start: number; health: number; switch: number; drain: number; stop: number; total: number;
    /** engine.type: swarm: getting the image into the registry (engine to engine, then the push), before the lock. */
    push?: number;
    /** engine.type: swarm: from creating the service until its last task started (placement and the nodes' pull); part of `start`. */
    pull?: number };
}

export interface RolloutOptions extends RolloutRequest {
  /** The nginx Slipway writes for, with `batchMs` = `router.batch_ms` (switches within it share one reload). */
  nginx: NginxTarget;
  docker: Docker;
  /** From createEtcdClient (@slipway/etcd/client). */
  etcd: Etcd3;
  /** `engine` of the configuration; absent or type docker: every container on `docker`. */
  engine?: EngineConfig;
  /** engine.type: swarm: a client of `engine.manager` (see swarmManager). `docker` stays the engine the image was built on. */
  manager?: Docker;
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
 * reload, and nginx's resolver caches waited out before the drain. See the
 * package README for the steps and error codes.
 *
 * Throws UnavailableError (etcd or Docker unreachable: retry), or a
 * SlipwayError with code `health_failed`, `nginx_check_failed`,
 * `nginx_conf_broken`, `nginx_check_not_run`, `nginx_reload_failed`, `template_invalid`, `cancelled`, `unsupported`,
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
  if (options.engine?.type === 'swarm') {
    if (!options.manager || !options.engine.registry) throw new InvalidInputError('engine.type: swarm needs a manager client and engine.registry');
    if (options.app.routing === 'dns') throw new UnsupportedRoutingError(options.app.name, 'dns', 'which engine.type: swarm does not support');
    return executeSwarmRollout(
      { swarm: new SwarmRuntime(options.manager, { registryAuth: options.engine.registry_auth && { ...options.engine.registry_auth, serveraddress: options.engine.registry } }), store: new EtcdReleaseStore(options.etcd), proxy: new NginxRouteProxy(options.nginx) },
      { engine: options.engine, source: options.docker, manager: options.manager }, options);
  }
  return executeRollout(oneEngineSeams(options), options);
}

/** What a rollout on one engine works with; routing: dns needs the `dns` settings. */
function oneEngineSeams(options: Pick<RolloutOptions, 'app' | 'nginx' | 'dns' | 'docker' | 'etcd'>) {
  let proxy: RouteProxy;
  if (options.app.routing === 'dns') {
    if (!options.dns) throw new UnsupportedRoutingError(options.app.name, 'dns', 'but the rollout was given no `dns` settings (pass `dns: config.dns`)');
    proxy = new DnsRouteProxy(options.nginx, options.dns);
  } else {
    proxy = new NginxRouteProxy(options.nginx);
  }
  return { runtime: new DockerRuntime(options.docker), store: new EtcdReleaseStore(options.etcd), proxy };
}

/**
 * On one engine, after an attempt that went live and died before its end
 * (its job recorded completed by the attempt that found it live): the
 * containers that attempt would have drained and stopped are drained (if
 * they carry connections) and removed now, not left for the app's next
 * rollout. Returns their ids. Throws as `rollout` does when etcd, Docker or
 * the lock cannot be had.
 */
export async function removeStrayContainers(options: Omit<RolloutOptions, 'image' | 'sha' | 'engine' | 'manager'>): Promise<string[]> {
  assertAppName(options.app.name, 'app');
  return executeStrayRemoval(oneEngineSeams(options), { ...options, image: 'none', sha: null });
}
