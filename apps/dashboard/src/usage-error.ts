import { SlipwayError } from '@slipway/core/slipway-error';

/** Bad command-line flags: print usage, exit 2. */
export class UsageError extends SlipwayError {
  constructor(message: string) {
    super('usage', message);
    this.name = 'UsageError';
  }
}
