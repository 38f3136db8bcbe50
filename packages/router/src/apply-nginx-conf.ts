import type { SlipwayConfig } from '@slipway/config/types';
import { prepareNginxConf } from './prepare-nginx-conf.js';
import type { ReloadResult } from './reload-nginx.js';
import { renderNginxConf } from './render-nginx-conf.js';
import type { RouteSnapshot } from './route-snapshot.js';

export interface ApplyNginxConfOptions {
  nginx: SlipwayConfig['nginx'];
  snapshot: RouteSnapshot;
}

export interface ApplyResult {
  file: string;
  /** False when the live file already had this content: nothing was written, checked or reloaded. */
  changed: boolean;
  reloaded: boolean;
  reload?: ReloadResult;
}

/**
 * Render → write a candidate → check the candidate → atomic rename →
 * reload, skipping everything when the content is unchanged. Throws
 * EmptyUpstreamError (no live address), TemplateError, NginxCheckError or
 * NginxReloadError; in every case the previous live file stays (or is put
 * back) as it was.
 */
export async function applyNginxConf(options: ApplyNginxConfOptions): Promise<ApplyResult> {
  const content = renderNginxConf(options.snapshot);
  const prepared = await prepareNginxConf({ nginx: options.nginx, app: options.snapshot.app, content });
  if (!prepared.changed) return { file: prepared.file, changed: false, reloaded: false };
  const result = await prepared.commit();
  return { file: prepared.file, changed: true, ...result };
}
