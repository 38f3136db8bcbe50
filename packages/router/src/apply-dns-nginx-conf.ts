import { access } from 'node:fs/promises';
import type { SlipwayConfig } from '@slipway/config/types';
import { nginxNames } from './nginx-names.js';
import { prepareNginxConf } from './prepare-nginx-conf.js';
import { renderDnsNginxConf, type DnsRouteSnapshot } from './render-dns-nginx-conf.js';
import type { ApplyResult } from './apply-nginx-conf.js';

export interface ApplyDnsNginxConfOptions extends DnsRouteSnapshot {
  nginx: SlipwayConfig['nginx'];
  /** Only rewrite a file that exists (a config change after the first deploy); never create one. Default false. */
  onlyIfExists?: boolean;
}

/**
 * Writes the `routing: dns` file of an app the way applyNginxConf writes
 * an upstream one (candidate, check, rename, observed reload), and does
 * nothing at all when the file already has this content, which is every
 * deploy after the first: the file does not depend on the live containers.
 */
export async function applyDnsNginxConf(options: ApplyDnsNginxConfOptions): Promise<ApplyResult> {
  const file = nginxNames.path(options.nginx.conf_dir, options.app.name);
  if (options.onlyIfExists && !(await access(file).then(() => true, () => false))) return { file, changed: false, reloaded: false };
  const content = renderDnsNginxConf(options);
  const prepared = await prepareNginxConf({ nginx: options.nginx, app: options.app, content });
  if (!prepared.changed) return { file, changed: false, reloaded: false };
  return { file, changed: true, ...(await prepared.commit()) };
}
