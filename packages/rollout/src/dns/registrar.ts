import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { LABELS } from '@slipway/core/docker';
import { firstLine } from '@slipway/core/slipway-error';
import { dnsmasqPaths, startDnsRouter, type DnsRouterHandle } from '@slipway/router/dns';
import { DockerRuntime } from '../container-runtime.js';
import { AppRegistrations } from './app-registrations.js';
import { watchDockerEvents, type ContainerEvent } from './docker-events.js';
import { REGISTRAR_SESSION_TTL_S, REGISTRATION_TTL_S } from './plan-registration.js';
import { RegistrarClaims } from './registrar-claims.js';
import { oneRunPerKey } from '../one-run-per-key.js';

/** Docker events that can change what should be registered. */
const ACTIONS = ['start', 'die', 'destroy', 'pause', 'unpause'] as const;
/** Events that end a container's registration at once, before any reconcile. */
const GONE = new Set(['die', 'destroy', 'pause']);

export interface RegistrarOptions {
  /** The configuration's apps; only those with `routing: dns` are served. */
  apps: SlipwayConfig['apps'];
  docker: Docker;
  /** Create it with createEtcdClient (@slipway/etcd/client). */
  etcd: Etcd3;
  log?: (line: string) => void;
  /** TTL of each key's lease. Default REGISTRATION_TTL_S (10 s). */
  ttlS?: number;
  /** TTL of the claim on the apps. Default REGISTRAR_SESSION_TTL_S (3 s). */
  sessionTtlS?: number;
  /** Told about every change made to etcd (tests, the dashboard). */
  onChange?: (change: RegistrationChange) => void;
}

export interface RegistrationChange {
  app: string;
  action: 'registered' | 'adopted' | 'removed';
  key: string;
  address?: string;
  why?: string;
  /** Date.now() when etcd had it. */
  at: number;
}

export interface RegistrarHandle {
  /** The dns apps this registrar holds now (another registrar holds the rest). */
  serving(): string[];
  /** Reconciles one app (or all) now; resolves when done. */
  reconcile(app?: string): Promise<void>;
  /**
   * Stops: gives up its claims at once (a standby registrar takes over and
   * adopts the keys) and stops renewing, revoking nothing: a registrar that
   * is restarted within the TTL keeps every app's DNS as it was.
   */
  close(): Promise<void>;
}

/**
 * skydock's and registrator's role for `routing: dns` apps, as a
 * long-running part of `slipway router`: containers labelled
 * `slipway.app=<app>` are registered as `<etcd_prefix>/<id12>` = `ip:port`
 * once our own probe of `health.path` answers 2xx, and removed when they
 * die, stop or vanish. What should be registered is planRegistration's rule
 * (running, of the live release, at the app's port), which agrees with
 * every rollout switch. Each key is on a lease of its own, renewed every
 * ttlS/3 only while Docker still shows its container running, so a
 * container that dies unnoticed, or a registrar that dies, drops out of
 * etcd within ttlS by itself. On start, and whenever Docker's event stream
 * or etcd comes back, every app is reconciled with what runs.
 *
 * One registrar serves an app at a time (RegistrarClaims): another
 * registrar (another `slipway router`) waits and takes over when the
 * holder goes, adopting the keys before their leases run out. A rollout of
 * a dns app refuses to switch while no registrar holds it.
 *
 * Throws UnavailableError when etcd cannot be reached at start.
 */
export async function startRegistrar(options: RegistrarOptions): Promise<RegistrarHandle> {
  const registrar = new Registrar(options);
  await registrar.start();
  return registrar;
}

export interface StartDnsRoutingOptions {
  config: Pick<SlipwayConfig, 'apps' | 'nginx' | 'dns' | 'workdir'> & Partial<Pick<SlipwayConfig, 'router'>>;
  /** From createEtcdClient (@slipway/etcd/client). */
  etcd: Etcd3;
  docker: Docker;
  log?: (line: string) => void;
  /**
   * Feed a dnsmasq that runs elsewhere (the devstack's `dns` service) through
   * its hosts directory, instead of running one. Default: run dnsmasq on
   * `dns.server`, its files under `<workdir>/dns/` (dnsmasqPaths).
   */
  external?: { hostsDir: string };
  onChange?: (change: RegistrationChange) => void;
}

export interface DnsRoutingHandle {
  router: DnsRouterHandle;
  registrar: RegistrarHandle | null;
  /** Stops the registrar (claims given up, nothing revoked), the feed and dnsmasq. */
  close(): Promise<void>;
}

/**
 * Everything `routing: dns` needs besides the rollout, for `slipway
 * router` to start beside watchRouter: dnsmasq (run by this process unless
 * `external`), the DNS feed from etcd, the dns apps' nginx files kept in
 * line with the configuration, and the registrar. With no dns app it
 * starts nothing. Throws UnavailableError when etcd is down at start,
 * `dnsmasq_failed` when dnsmasq cannot be started.
 */
export async function startDnsRouting(options: StartDnsRoutingOptions): Promise<DnsRoutingHandle> {
  const { config, etcd, docker, log } = options;
  const paths = dnsmasqPaths(config.workdir);
  const router = await startDnsRouter({
    apps: config.apps, nginx: { ...config.nginx, batchMs: config.router?.batch_ms }, dns: config.dns, etcd, log,
    hostsDir: options.external?.hostsDir ?? paths.hostsDir,
    dnsmasq: options.external ? false : { pidFile: paths.pidFile },
  });
  const hasDnsApps = Object.values(config.apps).some((app) => app.routing === 'dns');
  let registrar: RegistrarHandle | null = null;
  try {
    if (hasDnsApps) registrar = await startRegistrar({ apps: config.apps, docker, etcd, log, onChange: options.onChange });
  } catch (err) {
    await router.close();
    throw err;
  }
  return {
    router,
    registrar,
    close: async () => {
      await registrar?.close();
      await router.close();
    },
  };
}

/**
 * The registrar: its claims (registrar-claims.ts) and, per app it holds,
 * its registrations (app-registrations.ts), driven by Docker's events, the
 * claims it gains, and a tick every ttlS/3 that renews and reconciles.
 * Reconciles run one per app at a time; requests while one runs coalesce
 * into one more.
 */
class Registrar implements RegistrarHandle {
  private readonly log: (line: string) => void;
  private readonly ttlS: number;
  private readonly apps: Map<string, AppConfig>;
  private readonly claims: RegistrarClaims;
  private readonly registrations = new Map<string, AppRegistrations>();
  private readonly runs = oneRunPerKey((app) => this.registrations.get(app)!.reconcile()
    .catch((err: Error) => this.log(`registrar: ${app}: ${firstLine(err)}`)), () => this.closed);
  private events?: { close(): void };
  private tick?: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: RegistrarOptions) {
    const log = options.log ?? (() => {});
    this.log = log;
    this.ttlS = options.ttlS ?? REGISTRATION_TTL_S;
    this.apps = new Map(Object.values(options.apps).filter((a) => a.routing === 'dns').map((a) => [a.name, a]));
    this.claims = new RegistrarClaims({
      etcd: options.etcd, apps: [...this.apps.keys()], sessionTtlS: options.sessionTtlS ?? REGISTRAR_SESSION_TTL_S, log,
      onGained: (app) => void this.queue(app),
      onLost: (app) => this.registrations.get(app)!.release(),
    });
    const runtime = new DockerRuntime(options.docker);
    for (const app of this.apps.values()) {
      this.registrations.set(app.name, new AppRegistrations(app, {
        etcd: options.etcd, runtime, ttlS: this.ttlS, log, onChange: options.onChange,
        holds: () => this.claims.holds(app.name),
        requeue: () => void this.queue(app.name),
      }));
    }
  }

  async start(): Promise<void> {
    await this.claims.start();
    this.events = watchDockerEvents({
      docker: this.options.docker,
      label: LABELS.app,
      actions: ACTIONS,
      log: (line) => this.log(`registrar: ${line}`),
      onConnected: () => this.apps.forEach((_a, name) => void this.queue(name)),
      onEvent: (e) => this.onEvent(e),
    });
    this.claims.watch();
    await this.claims.claimAll();
    this.tick = setInterval(() => void this.renewAll(), (this.ttlS * 1000) / 3);
    this.tick.unref();
    this.log(`registrar: ${this.apps.size} dns app${this.apps.size === 1 ? '' : 's'} (${[...this.apps.keys()].join(', ') || 'none'}); key TTL ${this.ttlS} s, serving ${this.serving().join(', ') || 'none yet'}`);
  }

  serving(): string[] {
    return [...this.claims.held];
  }

  async reconcile(app?: string): Promise<void> {
    if (app !== undefined) return this.queue(app);
    await Promise.all([...this.apps.keys()].map((name) => this.queue(name)));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.tick);
    this.events?.close();
    await this.claims.stop();
    await Promise.all(this.runs.running());
    for (const registrations of this.registrations.values()) registrations.release();
    await this.claims.giveUp();
  }

  private queue(app: string): Promise<void> {
    if (this.closed || !this.apps.has(app)) return Promise.resolve();
    return this.runs.ask(app);
  }

  private onEvent(e: ContainerEvent): void {
    const app = e.labels[LABELS.app];
    if (!app || !this.apps.has(app)) return;
    if (GONE.has(e.action) && this.claims.holds(app)) {
      void this.registrations.get(app)!.removeGone(e.id.slice(0, 12), e.action).finally(() => void this.queue(app));
    } else {
      void this.queue(app);
    }
  }

  /**
   * The tick: claims what is not held yet, then reconciles and renews every
   * app held, each app on its own. The reconcile goes first (a container
   * Docker no longer shows running is not renewed), but is waited for half a
   * tick at most: one held up (Docker slow to list, asks that keep its run
   * going) must not let the app's live keys, or another app's, expire.
   */
  private async renewAll(): Promise<void> {
    if (this.claims.held.size < this.apps.size) await this.claims.claimAll();
    const tickMs = (this.ttlS * 1000) / 3;
    await Promise.all([...this.claims.held].map(async (app) => {
      await Promise.race([this.queue(app), sleep(tickMs / 2, undefined, { ref: false })]);
      await this.registrations.get(app)?.renew(tickMs);
    }));
  }
}
