/** How a webhook was answered, as the `outcome` label of `slipway_webhooks_received_total`. */
export type WebhookOutcome = 'queued' | 'duplicate' | 'ignored' | 'rejected_4xx' | 'error_5xx';

/**
 * From the answer's status and the receiver's summary outcome (`queued`,
 * `duplicate`, `ignored:<reason>`, or an error code): 202 is queued, a 200
 * is a duplicate or ignored, 4xx were refused (signature, body, unknown
 * repository…), 5xx could not be handled (Redis away).
 */
export function webhookOutcome(status: number, summary: unknown): WebhookOutcome {
  if (status >= 500) return 'error_5xx';
  if (status >= 400) return 'rejected_4xx';
  if (status === 202) return 'queued';
  return summary === 'duplicate' ? 'duplicate' : 'ignored';
}
