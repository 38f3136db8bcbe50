#!/usr/bin/env node
import { main } from './main.js';

/**
 * Resolves once everything written to `stream` has been handed to the
 * reader, or the reader is gone. A pipe's writes are asynchronous here, and
 * `process.exit` drops what is still queued: `slipway jobs --json | less`
 * would get a cut document (a pipe holds 64 KB) and exit 0.
 */
function written(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.destroyed || !stream.writable || stream.writableLength === 0) return Promise.resolve();
  // A reader that went away (`| head`, `q` in less) fails the queued writes with EPIPE: the stream's 'error' comes a
  // tick after the write callbacks, and must find a listener still here, or node ends the command with a stack.
  stream.on('error', () => {});
  return new Promise((resolve) => {
    stream.once('close', () => resolve());
    // Called after every write queued before it, failed or not.
    stream.write('', () => resolve());
  });
}

main(process.argv.slice(2), process.env).then(async (code) => {
  process.exitCode = code;
  await Promise.all([written(process.stdout), written(process.stderr)]);
  // Open handles (a watcher, a lingering socket) must not keep a finished command alive.
  setTimeout(() => process.exit(code), 200).unref();
});
