import type { SlipwayConfig } from '@slipway/config/types';
import { configuredRepository, forgeApiBase } from '@slipway/forges/forge-address';
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
  /** Each app's `repo` and `forges.*.api_url`: where its statuses go. */
  config: Pick<SlipwayConfig, 'apps' | 'forges'>;
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
    const target = this.target(job);
    if (!target) return;
    const status = commitStatusForJob(job, { dashboard: this.options.dashboard, failureKind: options.failureKind });
    this.options.delivery.deliver({
      key: `status ${target.apiBase} ${target.fullName.toLowerCase()} ${target.sha} ${status.context}`,
      target: target.provider,
      what: 'commit status',
      context: { job: job.id, app: job.app, repository: target.fullName, sha: target.sha, state: status.state },
      send: (signal) => this.options.sender.send(target, status, signal),
      stillWanted: options.stillWanted,
    });
  }

  /**
   * Where `job`'s statuses go, or null when none go: not from a forge, no
   * token for it, or its app's repository not on a forge the config names.
   */
  private target(job: StatusJob & { push?: Push | null }): StatusTarget | null {
    const push = job.push;
    const app = this.options.config.apps[job.app];
    if (!push || push.provider === 'git' || !app || !this.options.sender.canSend(push.provider)) return null;
    const repo = configuredRepository(app, push.provider, this.options.config.forges, push.repository.fullName);
    const apiBase = repo && forgeApiBase(push.provider, repo.webRoot, this.options.config.forges);
    if (!repo?.fullName || !apiBase) return null;
    return { provider: push.provider, fullName: repo.fullName, apiBase, sha: push.sha, branch: push.branch };
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

