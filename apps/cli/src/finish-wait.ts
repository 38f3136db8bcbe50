import { publicJob } from '@slipway/queue/job-types';
import type { CliContext } from './cli-context.js';
import { watchJob } from './watch-job.js';

/** `--wait`: progress until the job ends; on failure the log's tail; exit 0 only if it completed. */
export async function finishWait(ctx: CliContext, id: string): Promise<number> {
  const queue = await ctx.queue();
  const record = await watchJob(queue.store, id, ctx.terminal, { showLog: false });
  if (ctx.options.json) ctx.terminal.out(JSON.stringify(publicJob(record), null, 2));
  if (record.state === 'failed') {
    const tail = (await queue.store.readLog(id, Math.max(1, (await queue.store.logLength(id)) - 14)));
    if (tail.length) ctx.terminal.err(`last lines of the log (slipway logs ${id} for all of it):\n${tail.map((l) => `  ${l}`).join('\n')}`);
  }
  return record.state === 'completed' ? 0 : 1;
}
