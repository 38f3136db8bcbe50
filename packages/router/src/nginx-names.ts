import { join } from 'node:path';

/**
 * Names Slipway gives an app inside nginx. App names match
 * `[a-z0-9][a-z0-9-]{0,62}`, so they are safe in file names and upstream
 * names as they are; nginx variable names cannot hold `-`, and since app
 * names cannot hold `_`, replacing one with the other stays unique.
 */
export const nginxNames = {
  /** The upstream block, unique per app (nginx refuses duplicates across files). */
  upstream: (app: string) => `slipway_${app}`,
  /** The `map` variable carrying `Connection: upgrade` for WebSockets. */
  connectionVariable: (app: string) => `$slipway_${app.replaceAll('-', '_')}_connection`,
  /** `slipway-<app>.conf`: what the main config's `include conf.d/*.conf` picks up. */
  file: (app: string) => `slipway-${app}.conf`,
  path: (confDir: string, app: string) => join(confDir, `slipway-${app}.conf`),
  /** Files of other apps written by Slipway, to include beside a candidate. */
  isSlipwayFile: (name: string) => /^slipway-[a-z0-9][a-z0-9-]{0,62}\.conf$/.test(name),
};
