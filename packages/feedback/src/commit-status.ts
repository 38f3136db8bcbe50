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
  provider: 'github' | 'gitea' | 'gitlab';
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
