import { validateConfig } from '@slipway/config/load-config';
import type { AppConfig } from '@slipway/config/types';
import { testAppName } from '@slipway/devstack/testing';

/**
 * A complete AppConfig for a test, built through the schema (so every
 * default is the real one), named so the stack's teardown recognises its
 * leftovers. `repo` is applied after validation: tests hand checkout hostile ones.
 */
export function testApp(overrides: Partial<AppConfig> & { repo: string }): AppConfig {
  const { name = testAppName(), ...raw } = overrides;
  const app = validateConfig({ apps: { [name]: { repo: '/srv/git/placeholder.git', replicas: 1, drain_s: 0, stop_timeout_s: 5, health: { timeout_s: 10 } } } }, { file: null, env: {} }).apps[name]!;
  return { ...app, ...raw };
}
