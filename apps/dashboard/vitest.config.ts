import { fileURLToPath } from 'node:url';
import { slipwayTestConfig } from '@slipway/devstack/vitest-config';

const config = slipwayTestConfig();
// Chromium for the browser tests, and the browser code compiled from source: `test` runs before this package's own build.
config.test!.globalSetup = [...(config.test!.globalSetup as string[]), fileURLToPath(new URL('./test/global-setup.ts', import.meta.url))];

export default config;
