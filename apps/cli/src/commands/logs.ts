import type { CliContext } from '../cli-context.js';
import { parseFlags } from '../parse-flags.js';
import { watchJob } from '../watch-job.js';

export const USAGE = 'usage: slipway logs <job> [--follow]';

/** The whole log; with --follow, live until the job ends, exiting with its outcome. */
export async function logs(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { follow: { type: 'boolean', short: 'f' } }, USAGE, { min: 1, max: 1 });
  const queue = await ctx.queue();
  const id = positionals[0]!;
  await queue.store.mustGet(id);
  if (!values.follow) {
    const lines = await queue.store.readLog(id);
    if (lines.length) ctx.terminal.out(lines.join('\n'));
    return 0;
  }
  const record = await watchJob(queue.store, id, ctx.terminal, { showLog: true });
  return record.state === 'completed' ? 0 : 1;
}
