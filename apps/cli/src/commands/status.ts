import { appStatus } from '@slipway/rollout/status';
import { managerClient } from '@slipway/rollout/swarm';
import type { CliContext } from '../cli-context.js';
import { age, short, table } from '../output/format.js';
import { parseFlags } from '../parse-flags.js';

export const USAGE = 'usage: slipway status [<app>] [--json]';

/** Live release, containers and their health, upstream keys, the nginx file, and any drift between them. */
export async function status(ctx: CliContext, argv: string[]): Promise<number> {
  const { positionals } = parseFlags(argv, {}, USAGE, { min: 0, max: 1 });
  const apps = positionals.length ? [ctx.app(positionals[0]!)] : Object.values(ctx.config.apps);
  const statuses = [];
  const manager = ctx.config.engine.type === 'swarm' ? managerClient(ctx.config.engine) : undefined;
  for (const app of apps) {
    statuses.push(await appStatus({ app, nginx: ctx.config.nginx, dns: ctx.config.dns, docker: ctx.docker, etcd: ctx.etcd, manager }));
  }
  if (ctx.options.json) {
    ctx.terminal.out(JSON.stringify(statuses, null, 2));
    return 0;
  }
  if (statuses.length === 0) ctx.terminal.out('no apps configured');
  for (const s of statuses) {
    const release = s.release ? `${short(s.release.sha ?? s.release.image)} (${s.release.image}, job ${s.release.job}, live ${age(s.release.at)})` : 'nothing live';
    ctx.terminal.out(`${s.app}: ${release}`);
    if (s.containers.length && manager) {
      ctx.terminal.out(table(['  TASK', 'SERVICE', 'NODE', 'ENDPOINT', 'HEALTH'], s.containers.map((c) => [`  ${short(c.id)}`, c.service ?? '-', c.node ?? '-', c.address ?? '-', c.healthy ? 'healthy' : 'UNHEALTHY'])));
    } else if (s.containers.length) {
      ctx.terminal.out(table(['  CONTAINER', 'ADDRESS', 'HEALTH'], s.containers.map((c) => [`  ${short(c.id)}`, c.address ?? '-', c.healthy ? 'healthy' : 'UNHEALTHY'])));
    }
    ctx.terminal.out(`  upstreams: ${s.upstreams.length ? s.upstreams.join(', ') : 'none'}`);
    ctx.terminal.out(`  nginx: ${s.nginx.file}${s.nginx.inSync ? ' (in sync)' : ' (OUT OF SYNC)'}`);
    for (const d of s.drift) ctx.terminal.out(`  drift: ${d}`);
  }
  return 0;
}
