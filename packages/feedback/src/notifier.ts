import { randomUUID } from 'node:crypto';
import type { NotifyTarget } from '@slipway/config/types';
import type { JobRecord } from '@slipway/queue/job-types';
import type { BackgroundDelivery } from './background-delivery.js';
import type { FailureKind } from './failure-kind.js';
import { notificationEvent } from './notification-event.js';
import { notificationPayload } from './notification-payload.js';
import { notificationRequest } from './notification-request.js';
import { sendHttpRequest } from './send-http-request.js';

export interface NotifierOptions {
  delivery: BackgroundDelivery;
  /** The dashboard's public address, for the job link (see dashboardUrl). */
  dashboard: string;
}

/**
 * Tells an app's `notify` targets how a deploy ended: a failure, a
 * recovery (first success after a failure) or, for targets that ask, any
 * success. Delivered in the background; never throws, never waits.
 */
export class Notifier {
  constructor(private readonly options: NotifierOptions) {}

  /**
   * For a completed or failed job. `previous` is how the app's deploy
   * before it ended (see previousOutcome). Returns how many notifications
   * were handed to the delivery.
   */
  notify(record: JobRecord, targets: readonly NotifyTarget[], previous: 'success' | 'failure' | null, failureKind?: FailureKind): number {
    if (record.state !== 'completed' && record.state !== 'failed') return 0;
    let sent = 0;
    for (const target of targets) {
      const event = notificationEvent(record.state === 'completed' ? 'success' : 'failure', previous, target.on);
      if (!event) continue;
      const delivery = randomUUID();
      const request = notificationRequest(target, notificationPayload(record, event, { dashboard: this.options.dashboard, failureKind }), delivery);
      this.options.delivery.deliver({
        key: `notify ${delivery}`,
        target: target.type,
        what: 'notification',
        // The URL's host only: a Slack webhook's path is its secret.
        context: { job: record.id, app: record.app, event, delivery, host: hostOf(target.url) },
        send: (signal) => sendHttpRequest(request, signal),
      });
      sent++;
    }
    return sent;
  }
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '?';
  }
}
