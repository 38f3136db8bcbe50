import { SlipwayError } from '@slipway/core/slipway-error';

/** A configuration that cannot be used; `problems` are `key.path: message` lines. */
export class ConfigError extends SlipwayError {
  readonly file: string | null;
  readonly problems: readonly string[];

  constructor(file: string | null, problems: readonly string[]) {
    const where = file ?? 'config';
    super('config_invalid', problems.map((p) => `${where}: ${p}`).join('\n'), { fault: 'request' });
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}
