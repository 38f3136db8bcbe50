import { SlipwayError } from '@slipway/core/slipway-error';
import { SHA_PREFIX } from '@slipway/core/validate';
import { currentRelease, listReleases } from '@slipway/rollout/releases';
import { publicJob } from '@slipway/queue/job-types';
import type { CliContext } from '../cli-context.js';
import { age, short } from '../output/format.js';
import { parseFlags } from '../parse-flags.js';
import { UsageError } from '../usage-error.js';
import { finishWait } from '../finish-wait.js';

export const USAGE = 'usage: slipway rollback <app> [--to <sha>] [--wait]';

/** Back to the previous release (or the one of `--to`), through the same zero-downtime rollout, no rebuild. */
export async function rollback(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { to: { type: 'string' }, wait: { type: 'boolean' } }, USAGE, { min: 1, max: 1 });
  const app = ctx.app(positionals[0]!);
  if (values.to !== undefined && !SHA_PREFIX.test(values.to)) throw new UsageError(`--to needs a commit sha (7-40 hex digits), got ${JSON.stringify(values.to)}`, USAGE);
  const queue = await ctx.queue();
  const current = await currentRelease(ctx.etcd, app.name);
  const releases = await listReleases(ctx.etcd, app.name);
  const target = values.to !== undefined
    ? releases.find((r) => r.sha?.startsWith(values.to!))
    : releases.find((r) => r.image !== current?.image);
  if (!target) {
    const why = values.to !== undefined ? `no kept release of ${app.name} has commit ${values.to}` : `${app.name} has no earlier release to roll back to`;
    throw new SlipwayError('no_release', `${why}${releases.length ? ` (kept: ${releases.map((r) => short(r.sha ?? r.image)).join(', ')})` : ''}`);
  }
  const record = await queue.enqueue({ app: app.name, sha: target.sha ?? null, ref: null, image: target.image, trigger: 'rollback' });
  if (ctx.options.json && !values.wait) {
    ctx.terminal.out(JSON.stringify(publicJob(record), null, 2));
    return 0;
  }
  ctx.terminal.out(`job ${record.id} queued: roll ${app.name} back to ${short(target.sha ?? target.image)} (${target.image}, live ${age(target.at)} by job ${target.job})`);
  return values.wait ? finishWait(ctx, record.id) : 0;
}
