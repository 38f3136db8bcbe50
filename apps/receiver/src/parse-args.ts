import { parseArgs as parseNodeArgs } from 'node:util';
import { UsageError } from './usage-error.js';

export interface ReceiverArgs {
  /** `--config PATH`; else `$SLIPWAY_CONFIG`, else ./slipway.yml (loadConfig decides). */
  config?: string;
  help: boolean;
}

export const USAGE = `usage: slipway-receiver [--config PATH]

Receives GitHub, Gitea/Forgejo/Gogs and GitLab push webhooks and queues deploys.
  --config PATH   slipway.yml to use (default: $SLIPWAY_CONFIG, else ./slipway.yml)
  -h, --help      show this help`;

/** Parses the receiver's flags; throws UsageError on anything unexpected. */
export function parseArgs(argv: readonly string[]): ReceiverArgs {
  try {
    const { values } = parseNodeArgs({
      args: [...argv],
      options: { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    });
    if (values.config === '') throw new UsageError('--config needs a path');
    return { config: values.config, help: values.help ?? false };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError((err as Error).message);
  }
}
