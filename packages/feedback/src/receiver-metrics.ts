import { collectDefaultMetrics, Counter, Registry } from 'prom-client';
import type { DeliveryOutcome } from './background-delivery.js';
import { deliveryCounter } from './delivery-counter.js';
import { webhookOutcome } from './webhook-outcome.js';

/** Forges with an endpoint; any other `/hooks/<x>` is counted as `unknown` (a label must not be attacker-chosen). */
const PROVIDERS = new Set(['github', 'gitea', 'gitlab']);

/**
 * The receiver's metrics, in a registry of its own (never prom-client's
 * global one): webhooks by provider and outcome, commit statuses it
 * posted, and the process's default metrics.
 */
export class ReceiverMetrics {
  readonly registry = new Registry();
  readonly webhooks: Counter<'provider' | 'outcome'>;
  private readonly deliveries: Counter<'target' | 'outcome'>;

  /** `defaultMetrics`: process and Node.js metrics (CPU, memory, event loop lag, GC). Default true. */
  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.webhooks = new Counter({
      name: 'slipway_webhooks_received_total',
      help: 'Webhooks answered, by provider and outcome (queued, duplicate, ignored, rejected_4xx, error_5xx).',
      labelNames: ['provider', 'outcome'] as const,
      registers: [this.registry],
    });
    this.deliveries = deliveryCounter(this.registry);
  }

  /** One answered webhook: its provider (from the path), status and the receiver's summary outcome. */
  webhook(provider: string, status: number, summary: unknown): void {
    this.webhooks.inc({ provider: PROVIDERS.has(provider) ? provider : 'unknown', outcome: webhookOutcome(status, summary) });
  }

  /** For BackgroundDelivery's `onSettled`. */
  readonly delivery = (target: string, outcome: DeliveryOutcome): void => {
    this.deliveries.inc({ target, outcome });
  };
}
