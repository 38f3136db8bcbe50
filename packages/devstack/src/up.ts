import { resolve } from 'node:path';
import { ensureBaseImage } from './base-image.js';
import { startStack, stopStack } from './stack.js';

/**
 * `npm start`: the services on loopback, then every part of Slipway with a
 * demo app, until Ctrl-C.
 */
export async function up(options: { log: (line: string) => void; dir?: string }): Promise<number> {
  const stack = await startStack({ dir: resolve(options.dir ?? '.slipway/stack'), log: options.log });
  await ensureBaseImage();
  console.log(`Redis  ${stack.redis?.url}\netcd   ${stack.etcd?.url}\nnginx  ${stack.nginx?.mainConf}\nDocker ${stack.docker?.host}`);
  console.log('Ctrl-C stops everything.');
  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  await stopStack(stack, options.log);
  return 0;
}
