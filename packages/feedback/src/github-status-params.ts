import type { CommitState, CommitStatus, StatusTarget } from './commit-status.js';

/** GitHub's commit status states. */
export const GITHUB_STATES: Readonly<Record<CommitState, 'pending' | 'success' | 'failure' | 'error'>> = {
  pending: 'pending', running: 'pending', success: 'success', failure: 'failure', error: 'error', cancelled: 'error',
};

/** A type, not an interface: octokit's `endpoint()` wants an index signature. */
export type GithubStatusParams = {
  owner: string;
  repo: string;
  sha: string;
  state: 'pending' | 'success' | 'failure' | 'error';
  target_url: string;
  description: string;
  context: string;
};

/** The parameters of `octokit.rest.repos.createCommitStatus` (`POST /repos/{owner}/{repo}/statuses/{sha}`). */
export function githubStatusParams(target: StatusTarget, status: CommitStatus): GithubStatusParams {
  const [owner, ...rest] = target.fullName.split('/');
  return {
    owner: owner!, repo: rest.join('/'), sha: target.sha,
    state: GITHUB_STATES[status.state], target_url: status.targetUrl, description: status.description, context: status.context,
  };
}
