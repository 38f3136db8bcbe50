import { parseArgs as parseNodeArgs } from 'node:util';
import { UsageError } from './usage-error.js';

export interface DashboardArgs {
  /** `--config PATH`; else `$SLIPWAY_CONFIG`, else ./slipway.yml (loadConfig decides). */
  config?: string;
  help: boolean;
}

export const USAGE = `usage: slipway-dashboard [--config PATH]

Serves the web dashboard and its JSON API on dashboard.host:dashboard.port.
  --config PATH   slipway.yml to use (default: $SLIPWAY_CONFIG, else ./slipway.yml)
  -h, --help      show this help`;

/** Parses the dashboard's flags; throws UsageError on anything unexpected. */
export function parseArgs(argv: readonly string[]): DashboardArgs {
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
