#!/usr/bin/env node
// `npm run build`: turbo's build of every package, under the bootstrap's lock
// (see install-lock.mjs), so that it never runs beside the bootstrap's build
// or a launcher's first-run build (scripts/launch.mjs), each clearing dist/
// under the other. Extra arguments go to turbo.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { holdInstallLock } from './install-lock.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const release = holdInstallLock(join(root, '.slipway', 'bootstrap.lock'), (line) => console.error(`[build] ${line}`));
const res = spawnSync('npx', ['--no-install', 'turbo', 'run', 'build', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
release();
process.exit(res.status ?? 1);
