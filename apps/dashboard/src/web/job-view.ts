import type { JobRecord } from '@slipway/queue/job-types';

// The job as the dashboard's API answers it and its pages read it, in the
// queue's own types (a type-only import: nothing of the queue's code reaches
// the browser). The server builds it with `jobView` (jobs-api.ts), and
// imports this file's types too, so both sides agree by construction.

/**
 * A job as the API shows it: the queue's record without what stays on the
 * server (the push as received, the exported source directory), with a
 * summary of the pushed commit instead.
 */
export type JobView = Omit<JobRecord, 'push' | 'sourceDir' | 'retryOf' | 'chosenAfter'> & {
  retryOf: string | null;
  commit: CommitSummary | null;
};

/** What the pages show of the push: its message's first line, who pushed, and the forge's compare link (http(s) only). */
export interface CommitSummary {
  message: string | null;
  pusher: string | null;
  compareUrl: string | null;
}

/** A job change as `/api/events` sends it. */
export type JobEvent = Pick<JobRecord, 'id' | 'app' | 'state' | 'step'>;
