#!/usr/bin/env node
// The slipway command. Committed with its execute bit and outside dist/, so
// that `npm ci` links it before anything is built and no rebuild or build
// cache restore can take the bit away; the code it runs is the build's.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(built)) {
  console.error(`slipway: not built yet (${fileURLToPath(built)} is missing). Run \`npm run build\` (or \`npm start\`, \`npm test\`) in the repository root.`);
  process.exit(1);
}
await import(built.href);
