import type { JobRecord } from '@slipway/queue/job-types';
import { STATUS_DESCRIPTION_MAX, type CommitStatus } from './commit-status.js';
import type { FailureKind } from './failure-kind.js';
import { formatDuration } from './format-duration.js';
import { jobPageUrl } from './job-page-url.js';
import { shortText } from './short-text.js';

/** The parts of a job record a status is made of. */
export type StatusJob = Pick<JobRecord, 'id' | 'app' | 'state' | 'step' | 'createdAt' | 'startedAt' | 'finishedAt' | 'error' | 'supersededBy'>;

export interface CommitStatusOptions {
  /** The dashboard's public address (see dashboardUrl). */
  dashboard: string;
  /** For a failed job: the commit's failure or Slipway's error. Default `failure`. */
  failureKind?: FailureKind;
}

/**
 * The commit status that says where a job is: waiting → `pending`, active
 * → `running`, completed → `success`, failed → `failure` or `error`,
 * superseded or cancelled → `cancelled` (not deployed; a newer push, or a
 * person, decided so). The description names the job and, once it ended,
 * how long it took and, for a failure, the step and the error's first line.
 */
export function commitStatusForJob(job: StatusJob, options: CommitStatusOptions): CommitStatus {
  const base = { targetUrl: jobPageUrl(options.dashboard, job.id), context: `slipway/${job.app}` };
  const took = job.finishedAt ? formatDuration(Date.parse(job.finishedAt) - Date.parse(job.startedAt ?? job.createdAt)) : '';
  const describe = (text: string) => shortText(text, STATUS_DESCRIPTION_MAX);
  switch (job.state) {
    case 'waiting':
      return { ...base, state: 'pending', description: describe(`Queued as job ${job.id}`) };
    case 'active':
      return { ...base, state: 'running', description: describe(`Deploying: job ${job.id}`) };
    case 'completed':
      return { ...base, state: 'success', description: describe(`Deployed in ${took} (job ${job.id})`) };
    case 'failed': {
      const kind = options.failureKind ?? 'failure';
      const head = kind === 'failure' ? `Failed at ${job.step} after ${took}` : `Could not deploy (${job.step}, ${took})`;
      return { ...base, state: kind, description: describe(job.error ? `${head}: ${job.error}` : head) };
    }
    case 'superseded':
      return { ...base, state: 'cancelled', description: describe(`Not deployed: superseded by job ${job.supersededBy ?? '?'}, a newer push`) };
    case 'cancelled':
      return { ...base, state: 'cancelled', description: describe(job.startedAt ? `Cancelled at ${job.step}; not deployed` : 'Cancelled while queued; not deployed') };
  }
}
