import type { CommitState, CommitStatus, StatusTarget } from './commit-status.js';
import type { HttpRequest } from './http-request.js';

/** GitLab's commit status states: it has `running` and `canceled`, and no `error`. */
export const GITLAB_STATES: Readonly<Record<CommitState, 'pending' | 'running' | 'success' | 'failed' | 'canceled'>> = {
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
