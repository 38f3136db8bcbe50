#!/usr/bin/env node
// Rewrites the README's configuration table from the schema (after `npm run build`).
import { readFileSync, writeFileSync } from 'node:fs';
import { configReference, REFERENCE_END, REFERENCE_START } from '../packages/config/dist/slipway-schema.js';

const file = new URL('../README.md', import.meta.url);
const readme = readFileSync(file, 'utf8');
const start = readme.indexOf(REFERENCE_START);
const end = readme.indexOf(REFERENCE_END);
if (start < 0 || end < 0) throw new Error('README.md has no config-reference markers');
writeFileSync(file, readme.slice(0, start) + configReference() + readme.slice(end + REFERENCE_END.length));
console.log('README.md configuration reference updated');
