import { publicJob, type JobRecord } from '@slipway/queue/job-types';
import type { CliContext } from '../cli-context.js';
import { short } from '../output/format.js';
import { parseFlags } from '../parse-flags.js';
import { UsageError } from '../usage-error.js';
import { watchJob } from '../watch-job.js';

export const USAGE = 'usage: slipway retry <job> [--wait] | slipway retry --failed [--app A] [--wait]';

export async function retry(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { failed: { type: 'boolean' }, app: { type: 'string' }, wait: { type: 'boolean' } }, USAGE, { min: 0, max: 1 });
  if (values.failed === (positionals.length === 1)) throw new UsageError('give a job id or --failed', USAGE);
  if (values.app !== undefined && !values.failed) throw new UsageError('--app goes with --failed', USAGE);
  if (values.app !== undefined) ctx.app(values.app);
  const queue = await ctx.queue();
  let started: JobRecord[];
  if (values.failed) {
    const { retried, skipped } = await queue.retryFailed(values.app);
    started = retried;
    if (!ctx.options.json) {
      for (const { job, reason } of skipped) ctx.terminal.err(`skipped job ${job.id} (${job.app} ${short(job.sha)}): ${reason}`);
      if (retried.length === 0) ctx.terminal.out('no failed jobs to retry');
    }
  } else {
    started = [await queue.retry(positionals[0]!)];
  }
  if (ctx.options.json && !values.wait) {
    ctx.terminal.out(JSON.stringify(started.map(publicJob), null, 2));
    return 0;
  }
  for (const job of started) ctx.terminal.out(`job ${job.id} queued: retry of job ${job.retryOf} (${job.app} ${short(job.sha ?? job.image)})`);
  if (!values.wait) return 0;
  let ok = true;
  for (const job of started) {
    const final = await watchJob(queue.store, job.id, ctx.terminal, { showLog: false });
    ok &&= final.state === 'completed';
  }
  return ok ? 0 : 1;
}
