#!/usr/bin/env node
// `npm run build`: turbo's build of every package, under the bootstrap's lock
// (buildLocked in launch.mjs), so that it never runs beside the bootstrap's
// build or a launcher's first-run build, each clearing dist/ under the other.
// Extra arguments go to turbo.
import { buildLocked } from './launch.mjs';

const res = buildLocked({ say: (line) => console.error(`[build] ${line}`), args: process.argv.slice(2) });
process.exit(res.status ?? 1);
