import type { Fault } from '@slipway/core/slipway-error';

/** How a job came to be. */
export type Trigger = 'webhook' | 'cli' | 'git-push' | 'retry' | 'rollback';
export const TRIGGERS: readonly Trigger[] = ['webhook', 'cli', 'git-push', 'retry', 'rollback'];

/** A job's state as users see it (`slipway jobs --state`). */
export type JobState = 'waiting' | 'active' | 'completed' | 'failed' | 'superseded' | 'cancelled';
export const JOB_STATES: readonly JobState[] = ['waiting', 'active', 'completed', 'failed', 'superseded', 'cancelled'];
export const FINAL_STATES: ReadonlySet<JobState> = new Set(['completed', 'failed', 'superseded', 'cancelled']);

/** Steps a deploy goes through, in order; each updates the job's progress. `test` only when the job has test steps to run. */
export type Step = 'queued' | 'checkout' | 'build' | 'test' | 'start' | 'health' | 'switch' | 'drain' | 'done';
export const STEPS: readonly Step[] = ['queued', 'checkout', 'build', 'test', 'start', 'health', 'switch', 'drain', 'done'];

/** One test step of a job (`apps.<app>.steps` or the commit's `.slipway.yml`) as it ran: the `test` entry of the timeline in detail. */
export interface TestStepRun {
  name: string;
  image: string;
  /** ISO 8601. */
  startedAt: string;
  /** Null while it runs. */
  durationMs: number | null;
  /** Null while it runs, or when it never exited on its own (stopped, or it could not start). */
  exitCode: number | null;
  outcome: 'running' | 'passed' | 'failed' | 'timeout' | 'cancelled';
}

/** A push, validated and normalised from whichever forge (or git hook) sent it. */
export interface Push {
  provider: 'github' | 'gitea' | 'gitlab' | 'git';
  /** The forge's delivery id; null for a git hook. */
  delivery: string | null;
  repository: { fullName: string; cloneUrl: string; htmlUrl: string | null };
  ref: string;
  branch: string;
  /** 40 hex digits. */
  sha: string;
  /** The previous head, 40 hex digits (zeros for a new branch); null when the payload did not say. */
  before: string | null;
  pusher: string | null;
  message: string | null;
  compareUrl: string | null;
  /**
   * The branch was force-pushed: its commit may be older than what is
   * live, on purpose. The forge said so (GitHub's `forced`), or the job
   * store found the push moved the branch back (see rewindFrom in
   * job-store.ts: Gitea and GitLab do not say).
   */
  forced?: boolean;
}

/** What a deploy job is asked to do. Never holds a secret. */
export interface DeployRequest {
  app: string;
  /** Full 40-hex commit to build; null for an image deploy. */
  sha: string | null;
  /** Branch (or ref) the sha came from, for display. */
  ref: string | null;
  /** Deploy this image instead of building (`--image`, rollback). */
  image: string | null;
  trigger: Trigger;
  push?: Push;
  /** The job this one re-runs (trigger `retry`). */
  retryOf?: string;
  /**
   * For a commit chosen by reading the branch (`slipway deploy` of the
   * branch, a retry): the newest job id when it was chosen. A webhook push
   * of the same branch queued after that id, whose chain of `before`s
   * reaches this commit, was pushed after the choice: it is the newer one,
   * whichever of the two reached the queue first (see JobStore.supersededBy).
   */
  chosenAfter?: string;
  /**
   * A tree already exported from the pushed commit (`git push` to a
   * Slipway remote, whose objects are not fetchable until the push is
   * accepted): build from here instead of checking out `sha`.
   */
  sourceDir?: string;
}

/** One job as stored and listed; `jobs --json` prints the public part of it. */
export interface JobRecord extends DeployRequest {
  id: string;
  state: JobState;
  /** Attempts started so far (a retry after a lost connection is a second attempt). */
  attempts: number;
  /** ISO 8601. */
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** First line of the failure, or null. */
  error: string | null;
  /** A failed job's: whose fault the failure was (a `failure` or an `error` on the commit). Absent on older records. */
  fault?: Fault;
  /** The job that replaced this one (state `superseded`). */
  supersededBy: string | null;
  /** The job that re-ran this one, once it has been retried. */
  retriedBy: string | null;
  /** The step reached, and when each began (ISO 8601). */
  step: Step;
  steps: Array<{ step: Step; at: string }>;
  /** The job's test steps so far, in order (absent when it has none). */
  tests?: TestStepRun[];
  /** Filled when the job ends: the image that went live and its release, and how the previous release drained. */
  result: { image: string; release?: string; drain?: DrainSummary } | null;
}

/**
 * How the previous release's connections ended before it was stopped:
 * after `ms`, with `open` still open (0: all closed by themselves; above
 * 0: `drain_s` ran out and those were stopped with the old release, so
 * their requests may have been cut).
 */
export interface DrainSummary {
  ms: number;
  open: number;
}

/** The shape of `slipway jobs --json`, fixed by the CLI contract. */
export interface PublicJob {
  id: string;
  app: string;
  sha: string | null;
  ref: string | null;
  trigger: Trigger;
  state: JobState;
  attempts: number;
  createdAt: string;
  finishedAt: string | null;
  error: string | null;
}

export function publicJob(record: JobRecord): PublicJob {
  const { id, app, sha, ref, trigger, state, attempts, createdAt, finishedAt, error } = record;
  return { id, app, sha, ref, trigger, state, attempts, createdAt, finishedAt, error };
}
