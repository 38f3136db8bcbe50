import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { UnavailableError } from '@slipway/core/slipway-error';
import { compareIps, dnsNames, renderDnsNginxConf, resolveHost } from '@slipway/router/dns';
import { backListen, nginxNames, prepareNginxConf, RELOAD_SETTLE_MS, reloadIfBehind, renderedUpstreams, renderNginxConf, routeSnapshot, type NginxTarget } from '@slipway/router/nginx';

/*
 * How traffic is pointed at containers: the proxy seam and its two
 * implementations, one per routing mode, both through the router's render
 * and apply.
 */

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
 * The proxy seam: how traffic is pointed at containers. NginxRouteProxy
 * renders and reloads an upstream block (routing: upstream); DnsRouteProxy
 * confirms the DNS answer instead and touches nginx only when its file
 * (independent of the containers) changes (routing: dns).
 */
export interface RouteProxy {
  /**
   * Brings the live routing in line with its own record where a crash left
   * them apart, before anything is planned from it (nginx: the file renamed
   * in, the reload never signalled). A line saying what it did, or null.
   */
  catchUp(app: AppConfig): Promise<string | null>;
  /** Addresses the live routing sends the app's traffic to. */
  routed(app: AppConfig): Promise<string[]>;
  /** Renders and checks the routing for `addresses`; nothing live changes. */
  prepare(app: AppConfig, addresses: readonly string[]): Promise<PreparedRoute>;
  /**
   * Where the nginx a switch reloads takes the app's requests: its
   * `listen`, or with two tiers the back's socket. A drain waits for the
   * client connections there that nginx's retiring workers hold.
   */
  listen(app: AppConfig): string;
}

/** The app's address on the nginx Slipway reloads (see RouteProxy.listen). */
function reloadedListen(nginx: NginxTarget, app: AppConfig): string {
  return backListen(nginx, app.name) ?? app.listen;
}

/** The proxy seam over nginx: the router's render, candidate check, atomic rename and observed reload. */
export class NginxRouteProxy implements RouteProxy {
  constructor(private readonly nginx: NginxTarget) {}

  listen(app: AppConfig): string {
    return reloadedListen(this.nginx, app);
  }

  /**
   * A worker killed between its switch's rename and its reload leaves
   * nginx serving the previous file's containers while the file (and etcd)
   * name the new ones: planned from the file, those would be strays, and
   * removed under nginx. So nginx reads the file first.
   */
  async catchUp(app: AppConfig): Promise<string | null> {
    const reload = await reloadIfBehind({ nginx: this.nginx, app });
    return reload && `nginx had not been asked to read ${nginxNames.path(this.nginx.conf_dir, app.name)} since it was put in place (a switch whose worker died before its reload): reloaded before planning (${reload.outcome} in ${reload.ms} ms)`;
  }

  /** The addresses of the live nginx file (it can lag etcd after a crash between the two). */
  async routed(app: AppConfig): Promise<string[]> {
    return renderedUpstreams(await readFile(nginxNames.path(this.nginx.conf_dir, app.name), 'utf8').catch(() => ''));
  }

  async prepare(app: AppConfig, addresses: readonly string[]): Promise<PreparedRoute> {
    const content = renderNginxConf(await routeSnapshot(app, addresses, backListen(this.nginx, app.name)));
    const prepared = await prepareNginxConf({ nginx: this.nginx, app, content });
    return {
      changed: prepared.changed,
      discard: () => prepared.discard(),
      commit: async () => {
        const started = Date.now();
        const result = await prepared.commit();
        if (result.reload) {
          const confirmed = result.reload.outcome === 'confirmed';
          return { reloaded: true, confirmed, ms: Date.now() - started };
        }
        // Someone else (the router) wrote the same file first; its reload may still be under way.
        await sleep(RELOAD_SETTLE_MS);
        return { reloaded: false, confirmed: false, ms: Date.now() - started };
      },
    };
  }
}

/** How long the DNS server may take to answer the new set after the switch (the feed needs milliseconds). */
export const DNS_SWITCH_TIMEOUT_MS = 5_000;
const DNS_POLL_MS = 20;

/**
 * The proxy seam for routing: dns. Traffic follows DNS: the switch's etcd
 * transaction is what changes routing (the DNS feed of `slipway router`
 * writes it to dnsmasq), and commit only confirms that `dns.server` answers
 * the new set. The nginx file does not depend on the containers: it is
 * written (checked, renamed, reloaded) only the first time or after a
 * configuration change, and otherwise never touched; nginx's own resolver
 * picks the new set up within RESOLVER_CACHE_MS, which the drain waits out.
 */
export class DnsRouteProxy implements RouteProxy {
  constructor(private readonly nginx: NginxTarget, private readonly dns: SlipwayConfig['dns']) {}

  listen(app: AppConfig): string {
    return reloadedListen(this.nginx, app);
  }

  /** DNS is fed from etcd by the router; the nginx file names no container. */
  catchUp(): Promise<string | null> {
    return Promise.resolve(null);
  }

  /** What the DNS server answers now, as `ip:port`; throws UnavailableError (service `dns`) when it does not answer. */
  async routed(app: AppConfig): Promise<string[]> {
    return (await resolveHost(this.dns.server, this.host(app.name))).map((ip) => `${ip}:${app.port}`);
  }

  async prepare(app: AppConfig, addresses: readonly string[]): Promise<PreparedRoute> {
    const prepared = await prepareNginxConf({ nginx: this.nginx, app, content: renderDnsNginxConf({ app, dns: this.dns, back: backListen(this.nginx, app.name) }) });
    const wanted = [...new Set(addresses.map((a) => a.split(':')[0]!))].sort(compareIps);
    return {
      // The DNS answer always changes with a new set of containers.
      changed: true,
      fileChanged: prepared.changed,
      discard: () => prepared.discard(),
      commit: async () => {
        const started = Date.now();
        try {
          await this.untilAnswered(app.name, wanted);
        } catch (err) {
          await prepared.discard();
          throw err;
        }
        const dnsMs = Date.now() - started;
        // First deploy or a configuration change: written after DNS answers, so nginx never resolves an empty name.
        const applied = await prepared.commit();
        return { reloaded: applied.reloaded, confirmed: true, ms: Date.now() - started, dnsMs };
      },
    };
  }

  /** Polls the DNS server until it answers `wanted`; UnavailableError (service `dns`) after DNS_SWITCH_TIMEOUT_MS. */
  private async untilAnswered(app: string, wanted: readonly string[]): Promise<void> {
    const started = Date.now();
    let answer: string[] = [];
    let problem = '';
    for (;;) {
      try {
        answer = await resolveHost(this.dns.server, this.host(app));
        problem = '';
      } catch (err) {
        problem = (err as Error).message;
      }
      if (!problem && answer.join() === wanted.join()) return;
      if (Date.now() - started > DNS_SWITCH_TIMEOUT_MS) {
        throw new UnavailableError('dns', `${this.dns.server} did not answer ${this.host(app)} with ${wanted.join(', ')} within ${DNS_SWITCH_TIMEOUT_MS} ms of the switch `
          + `(${problem || `it answers ${answer.join(', ') || 'nothing'}`}); is \`slipway router\` (which feeds it from etcd) running?`);
      }
      await sleep(DNS_POLL_MS);
    }
  }

  private host(app: string): string {
    return dnsNames.host(app, this.dns.domain);
  }
}
