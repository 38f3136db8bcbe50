import { setTimeout as sleep } from 'node:timers/promises';
import { FINAL_STATES } from '@slipway/queue/job-types';
import type { CliContext } from '../cli-context.js';
import { parseFlags } from '../parse-flags.js';

export const USAGE = 'usage: slipway cancel <job>';

/** How long `cancel` waits to report a running job's end before leaving it to stop on its own. */
const WAIT_FOR_STOP_MS = 60_000;

export async function cancel(ctx: CliContext, argv: string[]): Promise<number> {
  const { positionals } = parseFlags(argv, {}, USAGE, { min: 1, max: 1 });
  const queue = await ctx.queue();
  const id = positionals[0]!;
  const after = await queue.cancel(id);
  if (after.state === 'cancelled') {
    ctx.terminal.out(`job ${id} cancelled (it had not started)`);
    return 0;
  }
  ctx.terminal.err(`job ${id} is running; it stops at the next safe point (never mid-cutover)…`);
  const deadline = Date.now() + WAIT_FOR_STOP_MS;
  while (Date.now() < deadline) {
    const record = await queue.store.mustGet(id);
    if (FINAL_STATES.has(record.state)) {
      if (record.state === 'cancelled') ctx.terminal.out(`job ${id} cancelled; nothing of it went live`);
      else ctx.terminal.out(`job ${id} ended ${record.state} before it could stop`);
      return record.state === 'cancelled' ? 0 : 1;
    }
    await sleep(250);
  }
  ctx.terminal.out(`job ${id} has been asked to stop; follow it with: slipway logs ${id} --follow`);
  return 0;
}
