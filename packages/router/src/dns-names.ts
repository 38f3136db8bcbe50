import { join } from 'node:path';

/**
 * Names Slipway gives a `routing: dns` app. App names match
 * `[a-z0-9][a-z0-9-]{0,62}`: a valid DNS label, and safe as a file name.
 */
export const dnsNames = {
  /** `<app>.<domain>`: what dnsmasq answers with the live containers' addresses. */
  host: (app: string, domain: string) => `${app}.${domain.replace(/\.$/, '')}`,
  /** The app's hosts file in dnsmasq's `--hostsdir`. */
  hostsFile: (hostsDir: string, app: string) => join(hostsDir, app),
  /** The nginx variable holding the host name; a variable `proxy_pass` makes nginx resolve at request time. */
  backendVariable: (app: string) => `$slipway_${app.replaceAll('-', '_')}_backend`,
};
