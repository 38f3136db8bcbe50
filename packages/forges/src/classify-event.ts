import type { Provider } from './provider.js';

/** Why a webhook was acknowledged without queuing anything. */
export type IgnoreReason = 'ping' | 'event' | 'tag' | 'branch_deletion' | 'other_ref' | 'other_branch';

export type EventKind =
  | { kind: 'push' }
  | { kind: 'ping' }
  | { kind: 'ignored'; reason: IgnoreReason; message: string };

const PUSH: Record<Provider, string> = { github: 'push', gitea: 'push', gitlab: 'Push Hook' };

/**
 * Sorts a request by its event header alone, before the body is parsed:
 * pushes go on, pings are answered once verified, everything else is
 * acknowledged and dropped (the body is never looked at).
 */
export function classifyEvent(provider: Provider, event: string): EventKind {
  if (event === PUSH[provider]) return { kind: 'push' };
  if (provider === 'github' && event === 'ping') return { kind: 'ping' };
  if (provider === 'gitlab' && event === 'Tag Push Hook') return { kind: 'ignored', reason: 'tag', message: 'tag pushes do not deploy' };
  return { kind: 'ignored', reason: 'event', message: `${JSON.stringify(event)} events do not deploy; only pushes do` };
}
