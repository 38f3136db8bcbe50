import type { JobStore } from '@slipway/queue/job-store';
import type { JobState } from '@slipway/queue/job-types';

/** States of a newer job that make an older one pointless to deploy. */
const SUPERSEDING: ReadonlySet<JobState> = new Set(['waiting', 'active', 'completed']);

/**
 * The newest job of the same app, newer than `id`, that is waiting, running
 * or already live — or null when `id` is the newest that matters. An older
 * commit is never deployed over a newer push, whatever order the queue
 * hands jobs out in. Failed, cancelled and superseded newer jobs do not
 * count: they never went live.
 */
export async function supersededBy(store: JobStore, app: string, id: string): Promise<string | null> {
  const newer = await store.redis.zrangebyscore(store.keys.byApp(app), `(${Number(id)}`, '+inf');
  for (const candidate of newer.reverse()) {
    const state = await store.redis.hget(store.keys.job(candidate), 'state');
    if (state && SUPERSEDING.has(JSON.parse(state) as JobState)) return candidate;
  }
  return null;
}
