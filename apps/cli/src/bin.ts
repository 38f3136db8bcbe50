#!/usr/bin/env node
import { main } from './main.js';

main(process.argv.slice(2), process.env).then((code) => {
  process.exitCode = code;
  // Open handles (a watcher, a lingering socket) must not keep a finished command alive.
  setTimeout(() => process.exit(code), 200).unref();
});
