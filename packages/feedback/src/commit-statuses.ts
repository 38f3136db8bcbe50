import type { Push } from '@slipway/queue/job-types';
import type { BackgroundDelivery } from './background-delivery.js';
import type { StatusTarget } from './commit-status.js';
import { commitStatusForJob, type StatusJob } from './commit-status-for-job.js';
import type { FailureKind } from './failure-kind.js';
import type { ForgeStatusSender } from './forge-status-sender.js';

export interface CommitStatusesOptions {
  sender: ForgeStatusSender;
  delivery: BackgroundDelivery;
  /** The dashboard's public address, for each status's link (see dashboardUrl). */
  dashboard: string;
}

export interface PostOptions {
  /** For a failed job. */
  failureKind?: FailureKind;
  /** Asked before each try: false drops the status (the job has moved on, and a later status says so). */
  stillWanted?: () => Promise<boolean>;
}

/**
 * Commit statuses for jobs whose push came from GitHub, Gitea or GitLab
 * and whose forge has a token: built from the job, handed to the
 * background delivery and never awaited. Statuses of one commit and app go
 * out in order; a newer one replaces an older one still being retried.
 */
export class CommitStatuses {
  constructor(private readonly options: CommitStatusesOptions) {}

  /** Posts the status that says where `job` is now. Returns at once; never throws. */
  post(job: StatusJob & { push?: Push | null }, options: PostOptions = {}): void {
    const target = statusTarget(job.push);
    const base = target && this.options.sender.apiBase(target);
    if (!target || !base) return;
    const status = commitStatusForJob(job, { dashboard: this.options.dashboard, failureKind: options.failureKind });
    this.options.delivery.deliver({
      key: `status ${base} ${target.fullName.toLowerCase()} ${target.sha} ${status.context}`,
      target: target.provider,
      what: 'commit status',
      context: { job: job.id, app: job.app, repository: target.fullName, sha: target.sha, state: status.state },
      send: (signal) => this.options.sender.send(target, status, signal),
      stillWanted: options.stillWanted,
    });
  }

  /**
   * `pending` for jobs just queued from `push` (the receiver's part).
   * `stillQueued(id)` is asked before each try, so a late `pending` never
   * overwrites what the worker posted since.
   */
  queued(push: Push, jobs: ReadonlyArray<{ job: string; app: string }>, stillQueued?: (id: string) => Promise<boolean>): void {
    const now = new Date().toISOString();
    for (const { job, app } of jobs) {
      this.post(
        { id: job, app, push, state: 'waiting', step: 'queued', createdAt: now, startedAt: null, finishedAt: null, error: null, supersededBy: null },
        { stillWanted: stillQueued && (() => stillQueued(job)) },
      );
    }
  }
}

function statusTarget(push: Push | null | undefined): StatusTarget | null {
  if (!push || push.provider === 'git') return null;
  return {
    provider: push.provider, fullName: push.repository.fullName, htmlUrl: push.repository.htmlUrl,
    cloneUrl: push.repository.cloneUrl, sha: push.sha, branch: push.branch,
  };
}
