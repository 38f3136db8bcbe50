import { SlipwayError } from '@slipway/core/slipway-error';
import type { AppConfig, SlipwayConfig } from './types.js';

/** The named app, or an `unknown_app` error listing the ones that exist. */
export function appConfig(config: SlipwayConfig, name: string): AppConfig {
  const app = config.apps[name];
  if (!app) {
    const known = Object.keys(config.apps);
    throw new SlipwayError('unknown_app', `unknown app ${JSON.stringify(name)}${known.length ? ` (configured: ${known.join(', ')})` : ' (no apps configured)'}`, { status: 404, fault: 'request' });
  }
  return app;
}

/**
 * Every secret value the configuration holds (webhook secrets, clone
 * passwords, notification secrets, forge tokens, the dashboard token), for
 * scrubbing free text (build output, error messages) before it is stored or
 * shown. Values shorter than 4 characters are left out: they would match
 * everywhere and protect nothing.
 */
export function configSecrets(config: Pick<SlipwayConfig, 'apps' | 'forges' | 'dashboard'>): string[] {
  const found = new Set<string>();
  const add = (value: string | undefined) => {
    if (value && value.length >= 4) found.add(value);
  };
  for (const app of Object.values(config.apps)) {
    add(app.secret);
    add(app.credentials?.password);
    for (const target of app.notify) add(target.secret);
  }
  for (const forge of Object.values(config.forges)) add(forge.token);
  add(config.dashboard.token);
  return [...found];
}
