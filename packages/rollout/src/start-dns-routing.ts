import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { SlipwayConfig } from '@slipway/config/types';
import { dnsmasqPaths, type DnsRouterHandle, startDnsRouter } from '@slipway/router/dns';
import { startRegistrar, type RegistrarHandle, type RegistrationChange } from './registrar.js';

export interface StartDnsRoutingOptions {
  config: Pick<SlipwayConfig, 'apps' | 'nginx' | 'dns' | 'workdir'>;
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
    apps: config.apps, nginx: config.nginx, dns: config.dns, etcd, log,
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
