import type { JobStore } from '@slipway/queue/job-store';
import type { JobRecord } from '@slipway/queue/job-types';

/** How many of the app's recent jobs are looked through. */
const LOOKBACK = 50;

/**
 * How the app's deploy before `record` ended: the latest other job of the
 * app that completed or failed and finished no later than `record`
 * (superseded and cancelled ones decided nothing). Null when there is none.
 */
export async function previousOutcome(store: JobStore, record: Pick<JobRecord, 'id' | 'app' | 'finishedAt'>): Promise<'success' | 'failure' | null> {
  const until = record.finishedAt ? Date.parse(record.finishedAt) : Date.now();
  let best: JobRecord | null = null;
  for (const job of await store.list({ app: record.app, limit: LOOKBACK })) {
    if (job.id === record.id || (job.state !== 'completed' && job.state !== 'failed') || !job.finishedAt) continue;
    const at = Date.parse(job.finishedAt);
    if (at > until) continue;
    if (!best || at > Date.parse(best.finishedAt!) || (at === Date.parse(best.finishedAt!) && Number(job.id) > Number(best.id))) best = job;
  }
  return best ? (best.state === 'completed' ? 'success' : 'failure') : null;
}
