import type { SlipwayConfig } from '@slipway/config/types';
import { configuredRepository, forgeApiBase, type Provider } from '@slipway/forges/forge-address';
import type { JobRecord, Push } from '@slipway/queue/job-types';
import { DeliveryError, sendHttpRequest, type BackgroundDelivery, type DeliveryOutcome, type HttpRequest } from './delivery.js';
import { formatDuration, jobPageUrl, shortText, type FailureKind } from './job-wording.js';

/*
 * Commit statuses: what a job is, in a forge's words, on the commit it
 * deploys. In reading order: the status model, its wording for a job,
 * CommitStatuses (which decides where a job's statuses go and hands them to
 * the background delivery), the sender, and each forge's request.
 */

/**
 * A deploy's state as a commit status, before each forge's words for it:
 * `running` is GitHub's and Gitea's `pending` with another description;
 * `cancelled` (cancelled or superseded: not deployed, and not a failure of
 * the commit) is their `error` and GitLab's `canceled`.
 */
export type CommitState = 'pending' | 'running' | 'success' | 'failure' | 'error' | 'cancelled';

/** What Slipway says about one commit, for one app. */
export interface CommitStatus {
  state: CommitState;
  /** Short, one line, within every forge's limit (see STATUS_DESCRIPTION_MAX). */
  description: string;
  /** The job's dashboard page. */
  targetUrl: string;
  /** `slipway/<app>`: one status per app on the commit, updated in place. */
  context: string;
}

/**
 * Where a status goes: the forge a push came from, the app's repository on
 * it and the commit. Repository and API address come from the app's
 * configuration (see `configuredRepository`), never from the webhook:
 * a signed payload must not choose where the forge's token is sent.
 */
export interface StatusTarget {
  provider: Provider;
  /** `owner/name` (GitLab: the project's full path, groups included). */
  fullName: string;
  /** The forge's REST API root. */
  apiBase: string;
  sha: string;
  /** The branch pushed (GitLab attaches the status to that ref's pipeline). */
  branch: string;
}

/** GitHub has documented 140 characters; the others allow more. */
export const STATUS_DESCRIPTION_MAX = 140;

/** The parts of a job record a status is made of. */
export type StatusJob = Pick<JobRecord, 'id' | 'app' | 'state' | 'step' | 'createdAt' | 'startedAt' | 'finishedAt' | 'error' | 'supersededBy' | 'tests'>;

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
 * how long it took and, for a failure, the step (a test step by its name)
 * and the error's first line.
 */
export function commitStatusForJob(job: StatusJob, options: CommitStatusOptions): CommitStatus {
  const base = { targetUrl: jobPageUrl(options.dashboard, job.id), context: `slipway/${job.app}` };
  // A test step that did not pass is named: "test" alone would not say which.
  const stopped = job.step === 'test' ? job.tests?.find((run) => run.outcome !== 'passed') : undefined;
  const where = stopped ? `step ${stopped.name}` : job.step;
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
      const head = kind === 'failure' ? `Failed at ${where} after ${took}` : `Could not deploy (${where}, ${took})`;
      return { ...base, state: kind, description: describe(job.error ? `${head}: ${job.error}` : head) };
    }
    case 'superseded':
      return { ...base, state: 'cancelled', description: describe(`Not deployed: superseded by job ${job.supersededBy ?? '?'}, a newer push`) };
    case 'cancelled':
      return { ...base, state: 'cancelled', description: describe(job.startedAt ? `Cancelled at ${where}; not deployed` : 'Cancelled while queued; not deployed') };
  }
}

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
  /** Called once the forge took it. */
  delivered?: () => void;
  /** Called once with how it ended. */
  settled?: (outcome: DeliveryOutcome) => void;
}

/**
 * Commit statuses for jobs whose push came from GitHub, Gitea or GitLab
 * and whose forge has a token: built from the job, handed to the
 * background delivery and never awaited. Statuses of one commit and app go
 * out in order; a newer one replaces an older one still being retried.
 */
export class CommitStatuses {
  constructor(private readonly options: CommitStatusesOptions) {}

  /** Posts the status that says where `job` is now. Returns at once (whether a status is to go: false when `job` has no forge to tell); never throws. */
  post(job: StatusJob & { push?: Push | null }, options: PostOptions = {}): boolean {
    const target = this.target(job);
    if (!target) return false;
    const status = commitStatusForJob(job, { dashboard: this.options.dashboard, failureKind: options.failureKind });
    this.options.delivery.deliver({
      key: `status ${target.apiBase} ${target.fullName.toLowerCase()} ${target.sha} ${status.context}`,
      target: target.provider,
      what: 'commit status',
      context: { job: job.id, app: job.app, repository: target.fullName, sha: target.sha, state: status.state },
      send: (signal) => this.options.sender.send(target, status, signal),
      stillWanted: options.stillWanted,
      delivered: options.delivered,
      settled: options.settled,
    });
    return true;
  }

  /**
   * Where `job`'s statuses go, or null when none go: not from a forge, no
   * token for it, or its app's repository not on a forge the config names.
   */
  private target(job: StatusJob & { push?: Push | null }): StatusTarget | null {
    const push = job.push;
    const app = Object.hasOwn(this.options.config.apps, job.app) ? this.options.config.apps[job.app] : undefined;
    if (!push || push.provider === 'git' || !app || !this.options.sender.canSend(push.provider)) return null;
    const repo = configuredRepository(app, push.provider, this.options.config.forges, push.repository.fullName);
    const apiBase = repo && forgeApiBase(push.provider, repo.webRoot, this.options.config.forges);
    if (!repo?.fullName || !apiBase) return null;
    return { provider: push.provider, fullName: repo.fullName, apiBase, sha: push.sha, branch: push.branch };
  }

  /**
   * `pending` for jobs just queued from `push` (the receiver's part).
   * `stillQueued(id)` is asked before each try, so a late `pending` never
   * overwrites what the worker posted since; `delivered(id)` is told once
   * the forge took it.
   */
  queued(push: Push, jobs: ReadonlyArray<{ job: string; app: string }>, hooks: { stillQueued?: (id: string) => Promise<boolean>; delivered?: (id: string) => void } = {}): void {
    const now = new Date().toISOString();
    const { stillQueued, delivered } = hooks;
    for (const { job, app } of jobs) {
      this.post(
        { id: job, app, push, state: 'waiting', step: 'queued', createdAt: now, startedAt: null, finishedAt: null, error: null, supersededBy: null },
        { stillWanted: stillQueued && (() => stillQueued(job)), delivered: delivered && (() => delivered(job)) },
      );
    }
  }
}

/**
 * Posts one commit status to the forge a push came from, through each
 * forge's REST API, as one request sendHttpRequest makes (redirects
 * refused, only the start of an answer read). Tokens come from
 * `forges.<provider>.token` and go only into the request's auth header.
 */
export class ForgeStatusSender {
  constructor(private readonly forges: SlipwayConfig['forges']) {}

  /** Whether statuses can go to this provider's forge: a token is configured. */
  canSend(provider: StatusTarget['provider']): boolean {
    return Boolean(this.forges[provider]?.token);
  }

  /** One try; throws DeliveryError. */
  async send(target: StatusTarget, status: CommitStatus, signal: AbortSignal): Promise<void> {
    const token = this.forges[target.provider]?.token;
    if (!token) throw new DeliveryError(`no ${target.provider} token`, { retryable: false });
    const request = { github: githubStatusRequest, gitea: giteaStatusRequest, gitlab: gitlabStatusRequest }[target.provider];
    try {
      await sendHttpRequest(request(target.apiBase, token, target, status), signal);
    } catch (err) {
      // GitLab refuses a state the commit's status already has or has moved past ('Cannot transition status via :run
      // from :running'), as a re-posted running or a late pending is: what it shows is that state or a later one.
      if (target.provider === 'gitlab' && err instanceof DeliveryError && err.httpStatus === 400 && /cannot transition status/i.test(err.message)) return;
      throw err;
    }
  }
}

/** GitHub's commit status states. */
const GITHUB_STATES: Readonly<Record<CommitState, 'pending' | 'success' | 'failure' | 'error'>> = {
  pending: 'pending', running: 'pending', success: 'success', failure: 'failure', error: 'error', cancelled: 'error',
};

/**
 * `POST /repos/{owner}/{repo}/statuses/{sha}` with `Authorization: token …`,
 * GitHub's media type and API version, and `state`, `target_url`,
 * `description`, `context`, as GitHub's REST API documents it (GitHub
 * Enterprise Server: the same under `<host>/api/v3`).
 */
export function githubStatusRequest(apiBase: string, token: string, target: StatusTarget, status: CommitStatus): HttpRequest {
  const [owner, ...rest] = target.fullName.split('/');
  return {
    method: 'POST',
    url: `${apiBase}/repos/${encodeURIComponent(owner!)}/${encodeURIComponent(rest.join('/'))}/statuses/${target.sha}`,
    headers: {
      authorization: `token ${token}`, accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28', 'content-type': 'application/json', 'user-agent': 'Slipway',
    },
    body: JSON.stringify({ state: GITHUB_STATES[status.state], target_url: status.targetUrl, description: status.description, context: status.context }),
  };
}

/** Gitea's (and Forgejo's) CommitStatusState values Slipway uses. */
const GITEA_STATES: Readonly<Record<CommitState, 'pending' | 'success' | 'failure' | 'error'>> = {
  pending: 'pending', running: 'pending', success: 'success', failure: 'failure', error: 'error', cancelled: 'error',
};

/**
 * `POST /repos/{owner}/{repo}/statuses/{sha}` with `Authorization: token …`
 * and a CreateStatusOption body (`state`, `target_url`, `description`,
 * `context`), as Gitea's API documents it; Forgejo and Gogs take the same.
 */
export function giteaStatusRequest(apiBase: string, token: string, target: StatusTarget, status: CommitStatus): HttpRequest {
  const [owner, ...rest] = target.fullName.split('/');
  const path = `/repos/${encodeURIComponent(owner!)}/${encodeURIComponent(rest.join('/'))}/statuses/${target.sha}`;
  return {
    method: 'POST',
    url: `${apiBase}${path}`,
    headers: { authorization: `token ${token}`, 'content-type': 'application/json', accept: 'application/json', 'user-agent': 'Slipway' },
    body: JSON.stringify({ state: GITEA_STATES[status.state], target_url: status.targetUrl, description: status.description, context: status.context }),
  };
}

/** GitLab's commit status states: it has `running` and `canceled`, and no `error`. */
const GITLAB_STATES: Readonly<Record<CommitState, 'pending' | 'running' | 'success' | 'failed' | 'canceled'>> = {
  pending: 'pending', running: 'running', success: 'success', failure: 'failed', error: 'failed', cancelled: 'canceled',
};

/**
 * `POST /projects/{url-encoded full path}/statuses/{sha}` with
 * `PRIVATE-TOKEN`, and `state`, `ref`, `name`, `target_url`, `description`,
 * as GitLab's Commits API documents it. `ref` ties the status to the pushed
 * branch's pipeline.
 */
export function gitlabStatusRequest(apiBase: string, token: string, target: StatusTarget, status: CommitStatus): HttpRequest {
  return {
    method: 'POST',
    url: `${apiBase}/projects/${encodeURIComponent(target.fullName)}/statuses/${target.sha}`,
    headers: { 'private-token': token, 'content-type': 'application/json', accept: 'application/json', 'user-agent': 'Slipway' },
    body: JSON.stringify({
      state: GITLAB_STATES[status.state], ref: target.branch, name: status.context, target_url: status.targetUrl, description: status.description,
    }),
  };
}
