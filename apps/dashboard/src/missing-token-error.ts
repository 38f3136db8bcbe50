import { SlipwayError } from '@slipway/core/slipway-error';

/**
 * The dashboard was asked to start without `dashboard.token`: it never
 * serves anything unauthenticated, so it refuses to start (exit 2).
 */
export class MissingTokenError extends SlipwayError {
  constructor(file: string | null) {
    super('dashboard_token_missing', `${file ?? 'config'}: dashboard.token: required to start the dashboard (for example token: \${SLIPWAY_DASHBOARD_TOKEN}); every page and API call needs it`, { fault: 'request' });
    this.name = 'MissingTokenError';
  }
}
