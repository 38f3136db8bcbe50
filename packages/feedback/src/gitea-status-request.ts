import type { CommitState, CommitStatus, StatusTarget } from './commit-status.js';
import type { HttpRequest } from './http-request.js';

/** Gitea's (and Forgejo's) CommitStatusState values Slipway uses. */
export const GITEA_STATES: Readonly<Record<CommitState, 'pending' | 'success' | 'failure' | 'error'>> = {
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
