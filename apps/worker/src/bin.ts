#!/usr/bin/env node
import { runMain } from './main.js';

void runMain(process.argv.slice(2), process.env);
