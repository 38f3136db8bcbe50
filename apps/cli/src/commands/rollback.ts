import { rollbackApp } from '@slipway/queue/deploy-requests';
import { publicJob } from '@slipway/queue/job-types';
import type { CliContext } from '../cli-context.js';
import { finishWait } from '../finish-wait.js';
import { age, short } from '../output/format.js';
import { parseFlags } from '../parse-flags.js';

export const USAGE = 'usage: slipway rollback <app> [--to <sha>] [--wait]';

/** Back to the previous release (or the one of `--to`), through the same zero-downtime rollout, no rebuild. */
export async function rollback(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { to: { type: 'string' }, wait: { type: 'boolean' } }, USAGE, { min: 1, max: 1 });
  const app = ctx.app(positionals[0]!);
  const queue = await ctx.queue();
  const { job, target } = await rollbackApp({ queue, etcd: ctx.etcd, app, to: values.to });
  if (ctx.options.json && !values.wait) {
    ctx.terminal.out(JSON.stringify(publicJob(job), null, 2));
    return 0;
  }
  ctx.terminal.out(`job ${job.id} queued: roll ${app.name} back to ${short(target.sha ?? target.image)} (${target.image}, live ${age(target.at)} by job ${target.job})`);
  return values.wait ? finishWait(ctx, job.id) : 0;
}
