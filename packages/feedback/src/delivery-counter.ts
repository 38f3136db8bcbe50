import { Counter, type Registry } from 'prom-client';

/** `slipway_feedback_deliveries_total{target, outcome}`: commit statuses and notifications, delivered, failed (after every retry) or dropped (made moot by a newer status, or shutting down). */
export function deliveryCounter(registry: Registry): Counter<'target' | 'outcome'> {
  return new Counter({
    name: 'slipway_feedback_deliveries_total',
    help: 'Commit statuses and notifications by target (github, gitea, gitlab, slack, webhook) and outcome (delivered, failed after all retries, dropped as moot).',
    labelNames: ['target', 'outcome'] as const,
    registers: [registry],
  });
}
