import { SlipwayError } from '@slipway/core/slipway-error';

/**
 * Why a webhook request was refused. Each code has one HTTP status; callers
 * branch on the code, never on the message.
 */
export type WebhookErrorCode =
  | 'bad_header' // 400: a duplicated or malformed webhook header
  | 'missing_header' // 400: no event header
  | 'invalid_payload' // 400: not UTF-8, not JSON, not a `payload=` form
  | 'missing_field' // 400: a required payload field is absent
  | 'invalid_field' // 400: a field fails validation (sha, ref, URL…)
  | 'repository_host_mismatch' // 400: the payload's repository is on another host than the configured one
  | 'missing_signature' // 401
  | 'bad_signature' // 401
  | 'no_app' // 404: no app is configured for the repository
  | 'payload_too_large' // 413
  | 'unsupported_media_type'; // 415

const STATUS: Record<WebhookErrorCode, number> = {
  bad_header: 400,
  missing_header: 400,
  invalid_payload: 400,
  missing_field: 400,
  invalid_field: 400,
  repository_host_mismatch: 400,
  missing_signature: 401,
  bad_signature: 401,
  no_app: 404,
  payload_too_large: 413,
  unsupported_media_type: 415,
};

/** A refused webhook: the request's fault, whoever sent it. Messages never carry a secret, signature or token. */
export class WebhookError extends SlipwayError {
  declare readonly code: WebhookErrorCode;
  declare readonly status: number;

  constructor(code: WebhookErrorCode, message: string) {
    super(code, message, { status: STATUS[code], fault: 'request' });
    this.name = 'WebhookError';
  }
}
