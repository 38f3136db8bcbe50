import { deployApp } from '@slipway/queue/deploy-requests';
import { publicJob } from '@slipway/queue/job-types';
import type { CliContext } from '../cli-context.js';
import { finishWait } from '../finish-wait.js';
import { short } from '../output/format.js';
import { parseFlags } from '../parse-flags.js';
import { UsageError } from '../usage-error.js';

export const USAGE = 'usage: slipway deploy <app> [--ref <branch|sha>] [--image <image>] [--wait]';

export async function deploy(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ref: { type: 'string' }, image: { type: 'string' }, wait: { type: 'boolean' } }, USAGE, { min: 1, max: 1 });
  const app = ctx.app(positionals[0]!);
  if (values.ref !== undefined && values.image !== undefined) throw new UsageError('--ref and --image exclude each other', USAGE);
  const queue = await ctx.queue();
  const record = await deployApp({ config: ctx.config, queue, app, ref: values.ref, image: values.image, trigger: 'cli' });
  if (ctx.options.json && !values.wait) {
    ctx.terminal.out(JSON.stringify(publicJob(record), null, 2));
    return 0;
  }
  ctx.terminal.out(`job ${record.id} queued: deploy ${app.name} ${record.sha ? short(record.sha) : record.image}${record.ref ? ` (${record.ref})` : ''}`);
  return values.wait ? finishWait(ctx, record.id) : 0;
}
