import { SlipwayError } from '@slipway/core/slipway-error';
import type { AppConfig, SlipwayConfig } from './types.js';

/** The named app, or an `unknown_app` error listing the ones that exist. */
export function appConfig(config: SlipwayConfig, name: string): AppConfig {
  const app = config.apps[name];
  if (!app) {
    const known = Object.keys(config.apps);
    throw new SlipwayError('unknown_app', `unknown app ${JSON.stringify(name)}${known.length ? ` (configured: ${known.join(', ')})` : ' (no apps configured)'}`, { status: 404 });
  }
  return app;
}
