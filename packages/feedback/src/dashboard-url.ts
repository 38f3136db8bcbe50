import type { SlipwayConfig } from '@slipway/config/types';

/** Where users reach the dashboard: `dashboard.public_url`, else `http://<host>:<port>`. No trailing slash. */
export function dashboardUrl(dashboard: SlipwayConfig['dashboard']): string {
  if (dashboard.public_url) return dashboard.public_url.replace(/\/+$/, '');
  const host = dashboard.host.includes(':') ? `[${dashboard.host}]` : dashboard.host;
  return `http://${host}:${dashboard.port}`;
}
