import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { runCommand } from '@slipway/core/run-command';
import { ensureSystemPackages } from '@slipway/devstack/testing';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Installs Debian's chromium if missing and compiles the browser code into dist/web, as `npm run build` does. */
export default async function setup(): Promise<void> {
  ensureSystemPackages(['chromium'], (line) => console.error(`[dashboard tests] ${line}`));
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await runCommand([process.execPath, tsc, '-p', 'src/web/tsconfig.json'], { cwd: root, timeoutMs: 120_000 });
}
