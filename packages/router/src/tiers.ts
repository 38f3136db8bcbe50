import { join } from 'node:path';
import type { NginxTarget } from './nginx-reload.js';

/*
 * Two tiers (`nginx.front`): clients connect to a front nginx whose files
 * change only with an app's listen or server_name; it forwards each app to
 * the back nginx (`nginx.conf_dir`, the one deploys reload) on a unix
 * socket of its own. Without `nginx.front` there is one tier and the back
 * is the app's `listen`.
 */

/** The back's unix socket for an app, `unix:<socket_dir>/slipway-<app>.sock`; undefined without a front tier. */
export function backListen(nginx: NginxTarget, app: string): string | undefined {
  return nginx.front ? `unix:${join(nginx.front.socket_dir, `slipway-${app}.sock`)}` : undefined;
}

/** The front nginx as a target of its own (batched like the back, with no front of its own); null without a front tier. */
export function frontTarget(nginx: NginxTarget): NginxTarget | null {
  if (!nginx.front) return null;
  const { conf_dir, check_cmd, reload_cmd } = nginx.front;
  return { conf_dir, check_cmd, reload_cmd, batchMs: nginx.batchMs };
}
