/** A job as `/api/jobs` returns it (see the server's job-view.ts). */
export interface Job {
  id: string;
  app: string;
  sha: string | null;
  ref: string | null;
  image: string | null;
  trigger: string;
  state: string;
  step: string;
  steps: Array<{ step: string; at: string }>;
  attempts: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  supersededBy: string | null;
  retriedBy: string | null;
  retryOf: string | null;
  result: { image: string; release?: string } | null;
  commit: { message: string | null; pusher: string | null; compareUrl: string | null } | null;
}

export const FINAL_STATES = new Set(['completed', 'failed', 'superseded', 'cancelled']);
