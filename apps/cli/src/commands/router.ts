import { routerOnce } from '@slipway/router/router-once';
import { watchRouter } from '@slipway/router/watch-router';
import type { CliContext } from '../cli-context.js';
import { parseFlags } from '../parse-flags.js';

export const USAGE = 'usage: slipway router [--once]';

/** etcd → nginx, confd's role: once, or watching until Ctrl-C. */
export async function router(ctx: CliContext, argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { once: { type: 'boolean' } }, USAGE, { min: 0, max: 0 });
  const log = (line: string) => ctx.terminal.err(`router: ${line}`);
  if (values.once) {
    await routerOnce({ config: ctx.config, etcd: ctx.etcd, log });
    return 0;
  }
  const handle = await watchRouter({ config: ctx.config, etcd: ctx.etcd, log });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await handle.close();
  return 0;
}
