import { SlipwayError } from '@slipway/core/slipway-error';

/** Bad command line: exit 2 with the command's usage. */
export class UsageError extends SlipwayError {
  constructor(message: string, readonly usage: string) {
    super('usage', message, { fault: 'request' });
    this.name = 'UsageError';
  }
}
