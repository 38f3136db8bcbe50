import type { NotifyTarget } from '@slipway/config/types';
import type { HttpRequest } from './http-request.js';
import type { NotificationPayload } from './notification-payload.js';
import { signature256 } from './signature-256.js';
import { slackMessage } from './slack-message.js';

/**
 * The POST for one target. `slack`: the Slack-compatible `{text, blocks}`.
 * `webhook`: the payload as JSON, with `X-Slipway-Event`,
 * `X-Slipway-Delivery` (unique per notification; a retry repeats it) and,
 * with a secret, `X-Slipway-Signature-256: sha256=<hex>` over the body.
 */
export function notificationRequest(target: NotifyTarget, payload: NotificationPayload, delivery: string): HttpRequest {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'Slipway' };
  if (target.type === 'slack') return { method: 'POST', url: target.url, headers, body: JSON.stringify(slackMessage(payload)) };
  const body = JSON.stringify(payload);
  headers['x-slipway-event'] = payload.event;
  headers['x-slipway-delivery'] = delivery;
  if (target.secret) headers['x-slipway-signature-256'] = signature256(body, target.secret);
  return { method: 'POST', url: target.url, headers, body };
}
