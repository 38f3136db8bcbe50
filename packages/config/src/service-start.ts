import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, engineFileProblems, loadConfig } from './load-config.js';
import type { SlipwayConfig } from './types.js';

export interface ServiceStartOptions<F extends NonNullable<ParseArgsConfig['options']>> {
  /** The bin's name, for messages: `slipway-receiver`. */
  name: string;
  /** One line on what it does, shown under the usage line. */
  summary: string;
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
  /** Flags beyond `--config` and `--help`, with their help lines. */
  flags?: F;
  help?: Record<keyof F, string>;
  /** It talks to a swarm's manager: the files of `engine.tls` and `engine.ssh` must be readable (engineFileProblems). */
  readsEngineFiles?: boolean;
}

export type ServiceStart<F extends NonNullable<ParseArgsConfig['options']>> =
  | { config: SlipwayConfig; flags: { [K in keyof F]?: F[K]['type'] extends 'boolean' ? boolean : string } }
  /** Nothing to run: the exit code (0 after --help, 2 for bad flags or a bad config, its message printed). */
  | { exitCode: number };

/**
 * The start of every Slipway service (receiver, worker, dashboard): its
 * flags (`--config PATH`, `--help`, and its own), then `slipway.yml` from
 * `--config`, `$SLIPWAY_CONFIG` or `./slipway.yml`. Bad flags print the
 * usage and a bad config its one clear message, both with exit code 2,
 * never a stack trace.
 */
export function serviceStart<F extends NonNullable<ParseArgsConfig['options']>>(options: ServiceStartOptions<F>): ServiceStart<F> {
  const extra = Object.entries(options.help ?? {}).map(([flag, text]) => `  --${flag.padEnd(14)}${text}`);
  const usage = [
    `usage: ${options.name} [--config PATH]${Object.keys(options.flags ?? {}).map((f) => ` [--${f}${options.flags![f]!.type === 'string' ? ` ${f.toUpperCase()}` : ''}]`).join('')}`,
    '',
    options.summary,
    '  --config PATH   slipway.yml to use (default: $SLIPWAY_CONFIG, else ./slipway.yml)',
    ...extra,
    '  -h, --help      show this help',
  ].join('\n');
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: [...options.argv],
      options: { ...options.flags, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }).values;
    if (values.config === '') throw new Error('--config needs a path');
  } catch (err) {
    options.io.stderr.write(`${options.name}: ${(err as Error).message}\n${usage}\n`);
    return { exitCode: 2 };
  }
  if (values.help) {
    options.io.stdout.write(`${usage}\n`);
    return { exitCode: 0 };
  }
  try {
    const config = loadConfig({ path: values.config as string | undefined, env: options.env });
    const unreadable = options.readsEngineFiles ? engineFileProblems(config) : [];
    if (unreadable.length > 0) throw new ConfigError(config.file, unreadable);
    return { config, flags: values as never };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    options.io.stderr.write(`${err.message}\n`);
    return { exitCode: 2 };
  }
}
