#!/usr/bin/env node
// The slipway-dashboard command. Committed with its execute bit and outside dist/, so
// that `npm ci` links it before anything is built and no rebuild or build
// cache restore can take the bit away; the code it runs is the build's,
// built on first use when it is not there (scripts/launch.mjs).
import { launch } from '../../../scripts/launch.mjs';

await launch(new URL('../dist/bin.js', import.meta.url), 'slipway-dashboard');
