import type { NotifyTarget } from '@slipway/config/types';

/** What a finished deploy is to a notification target. */
export type NotificationEvent = 'failure' | 'recovery' | 'success';

/**
 * The event a finished deploy sends to a target, or null when the target
 * did not ask for it. A success is a `recovery` when the app's previous
 * finished deploy failed; a target with `success` in `on` hears of
 * recoveries too (as such), since they are successes.
 */
export function notificationEvent(outcome: 'success' | 'failure', previous: 'success' | 'failure' | null, on: NotifyTarget['on']): NotificationEvent | null {
  if (outcome === 'failure') return on.includes('failure') ? 'failure' : null;
  if (previous === 'failure') return on.includes('recovery') || on.includes('success') ? 'recovery' : null;
  return on.includes('success') ? 'success' : null;
}
