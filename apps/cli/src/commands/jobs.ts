import { JOB_STATES, publicJob, type JobState } from '@slipway/queue/job-types';
import type { CliContext } from '../cli-context.js';
import { age, duration, short, table } from '../output/format.js';
import { parseFlags, positiveInt } from '../parse-flags.js';
import { UsageError } from '../usage-error.js';

export const USAGE = 'usage: slipway jobs [--app A] [--state S] [--limit N] [--json]\n  S is one of: ' + JOB_STATES.join(', ');

export async function jobs(ctx: CliContext, argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { app: { type: 'string' }, state: { type: 'string' }, limit: { type: 'string' } }, USAGE, { min: 0, max: 0 });
  const state = values.state as JobState | undefined;
  if (state !== undefined && !JOB_STATES.includes(state)) throw new UsageError(`unknown state ${JSON.stringify(state)}`, USAGE);
  const limit = positiveInt(values.limit, '--limit', USAGE) ?? 20;
  if (values.app !== undefined) ctx.app(values.app);
  const queue = await ctx.queue();
  const records = await queue.store.list({ app: values.app, state, limit });
  if (ctx.options.json) {
    ctx.terminal.out(JSON.stringify(records.map(publicJob), null, 2));
    return 0;
  }
  if (records.length === 0) {
    ctx.terminal.out('no jobs');
    return 0;
  }
  const now = Date.now();
  ctx.terminal.out(table(['ID', 'APP', 'SHA', 'TRIGGER', 'STATE', 'DURATION', 'AGE'], records.map((r) => [
    r.id, r.app, r.sha ? short(r.sha) : (r.image ?? '-'), r.trigger, r.state,
    r.startedAt ? duration((r.finishedAt ? Date.parse(r.finishedAt) : now) - Date.parse(r.startedAt)) : '-',
    age(r.createdAt, now),
  ])));
  return 0;
}
