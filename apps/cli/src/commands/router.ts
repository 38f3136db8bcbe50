import { startDnsRouting } from '@slipway/rollout/registrar';
import { managerClient } from '@slipway/rollout/swarm';
import { startTaskWatcher } from '@slipway/rollout/task-watcher';
import { routerOnce, watchRouter } from '@slipway/router/watch';
import type { CliContext } from '../cli-context.js';
import { parseFlags } from '../parse-flags.js';

export const USAGE = 'usage: slipway router [--once]';

/**
 * etcd → nginx, confd's role: once (exit 1 if an app could not be
 * applied), or watching until Ctrl-C. Watching also runs what `routing:
 * dns` apps need (dnsmasq, its feed from etcd, the registrar); with no dns
 * app that starts nothing. With engine.type: swarm it also runs the task
 * watcher: the upstream keys follow the tasks Swarm moves.
 */
export async function router(ctx: CliContext, argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { once: { type: 'boolean' } }, USAGE, { min: 0, max: 0 });
  const log = (line: string) => ctx.terminal.err(`router: ${line}`);
  const options = { apps: ctx.config.apps, nginx: { ...ctx.config.nginx, batchMs: ctx.config.router.batch_ms }, etcd: ctx.etcd, log };
  if (values.once) {
    const results = await routerOnce(options);
    return results.some((r) => r.outcome === 'failed') ? 1 : 0;
  }
  const upstream = await watchRouter(options);
  const dns = await startDnsRouting({ config: ctx.config, etcd: ctx.etcd, docker: ctx.docker, log }).catch(async (err: unknown) => {
    await upstream.close();
    throw err;
  });
  const tasks = ctx.config.engine.type !== 'swarm' ? null
    : await startTaskWatcher({ apps: ctx.config.apps, manager: managerClient(ctx.config.engine), etcd: ctx.etcd, log }).catch(async (err: unknown) => {
      await dns.close();
      await upstream.close();
      throw err;
    });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await tasks?.close();
  await dns.close();
  await upstream.close();
  return 0;
}
