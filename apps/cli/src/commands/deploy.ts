import { isBranchName, isSha, SHA_PREFIX } from '@slipway/core/validate';
import { resolveRef } from '@slipway/build/resolve-ref';
import { publicJob, type JobRecord } from '@slipway/queue/job-types';
import type { CliContext } from '../cli-context.js';
import { short } from '../output/format.js';
import { parseFlags } from '../parse-flags.js';
import { UsageError } from '../usage-error.js';
import { finishWait } from '../finish-wait.js';

export const USAGE = 'usage: slipway deploy <app> [--ref <branch|sha>] [--image <image>] [--wait]';

/** A Docker image reference we are willing to pass on: no option-like or odd characters. */
const IMAGE_REF = /^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]{1,128})?(@sha256:[a-f0-9]{64})?$/;

export async function deploy(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ref: { type: 'string' }, image: { type: 'string' }, wait: { type: 'boolean' } }, USAGE, { min: 1, max: 1 });
  const app = ctx.app(positionals[0]!);
  if (values.ref !== undefined && values.image !== undefined) throw new UsageError('--ref and --image exclude each other', USAGE);
  let record: JobRecord;
  if (values.image !== undefined) {
    if (!IMAGE_REF.test(values.image) || values.image.length > 255) throw new UsageError(`not an image reference: ${JSON.stringify(values.image)}`, USAGE);
    const queue = await ctx.queue();
    record = await queue.enqueue({ app: app.name, sha: null, ref: null, image: values.image, trigger: 'cli' });
  } else {
    const ref = values.ref ?? app.branch;
    if (!isBranchName(ref) && !SHA_PREFIX.test(ref)) throw new UsageError(`not a branch or commit: ${JSON.stringify(ref)}`, USAGE);
    const queue = await ctx.queue();
    if (!ctx.options.json) ctx.terminal.err(`resolving ${ref} in ${app.repo.replace(/\/\/[^@/]*@/, '//***@')}…`);
    const sha = await resolveRef({ app, ref, workdir: ctx.config.workdir });
    record = await queue.enqueue({ app: app.name, sha, ref: isSha(ref) || SHA_PREFIX.test(ref) && !isBranchName(ref) ? null : ref, image: null, trigger: 'cli' });
  }
  if (ctx.options.json && !values.wait) {
    ctx.terminal.out(JSON.stringify(publicJob(record), null, 2));
    return 0;
  }
  ctx.terminal.out(`job ${record.id} queued: deploy ${app.name} ${record.sha ? short(record.sha) : record.image}`);
  return values.wait ? finishWait(ctx, record.id) : 0;
}
