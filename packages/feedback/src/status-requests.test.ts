import { describe, expect, it } from 'vitest';
import { Octokit } from '@octokit/rest';
import type { CommitStatus, StatusTarget } from './commit-status.js';
import { giteaStatusRequest } from './gitea-status-request.js';
import { githubStatusParams } from './github-status-params.js';
import { gitlabStatusRequest } from './gitlab-status-request.js';

const sha = 'a'.repeat(40);
const target = (provider: StatusTarget['provider'], fullName: string): StatusTarget => ({ provider, fullName, apiBase: 'https://forge.example/api', sha, branch: 'main' });
const status = (state: CommitStatus['state']): CommitStatus => ({ state, description: 'Deployed in 3 s (job 9)', targetUrl: 'https://d.example/jobs/9', context: 'slipway/web' });

describe('status request builders', () => {
  it('Gitea: POST /repos/{owner}/{repo}/statuses/{sha}, Authorization: token, CreateStatusOption body', () => {
    expect(giteaStatusRequest('https://git.example/api/v1', 's3cret', target('gitea', 'acme/web'), status('success'))).toEqual({
      method: 'POST',
      url: `https://git.example/api/v1/repos/acme/web/statuses/${sha}`,
      headers: { authorization: 'token s3cret', 'content-type': 'application/json', accept: 'application/json', 'user-agent': 'Slipway' },
      body: JSON.stringify({ state: 'success', target_url: 'https://d.example/jobs/9', description: 'Deployed in 3 s (job 9)', context: 'slipway/web' }),
    });
  });

  it('GitLab: POST /projects/{encoded path}/statuses/{sha}, PRIVATE-TOKEN, name and ref', () => {
    const request = gitlabStatusRequest('https://gl.example/api/v4', 'glpat-x', target('gitlab', 'group/sub/web'), status('failure'));
    expect(request.url).toBe(`https://gl.example/api/v4/projects/group%2Fsub%2Fweb/statuses/${sha}`);
    expect(request.headers['private-token']).toBe('glpat-x');
    expect(request.headers.authorization).toBeUndefined();
    expect(JSON.parse(request.body)).toEqual({ state: 'failed', ref: 'main', name: 'slipway/web', target_url: 'https://d.example/jobs/9', description: 'Deployed in 3 s (job 9)' });
  });

  it.each([
    ['pending', 'pending', 'pending', 'pending'],
    ['running', 'pending', 'pending', 'running'],
    ['success', 'success', 'success', 'success'],
    ['failure', 'failure', 'failure', 'failed'],
    ['error', 'error', 'error', 'failed'],
    ['cancelled', 'error', 'error', 'canceled'],
  ] as const)('state %s is %s on GitHub, %s on Gitea, %s on GitLab', (state, github, gitea, gitlab) => {
    expect(githubStatusParams(target('github', 'a/b'), status(state)).state).toBe(github);
    expect(JSON.parse(giteaStatusRequest('x', 't', target('gitea', 'a/b'), status(state)).body).state).toBe(gitea);
    expect(JSON.parse(gitlabStatusRequest('x', 't', target('gitlab', 'a/b'), status(state)).body).state).toBe(gitlab);
  });

  it('GitHub: octokit turns the parameters into POST /repos/{owner}/{repo}/statuses/{sha}', () => {
    const octokit = new Octokit({ auth: 'ghp_x', baseUrl: 'https://ghe.example/api/v3' });
    const endpoint = octokit.rest.repos.createCommitStatus.endpoint(githubStatusParams(target('github', 'acme/web'), status('success')));
    expect(endpoint.method).toBe('POST');
    expect(endpoint.url).toBe(`https://ghe.example/api/v3/repos/acme/web/statuses/${sha}`);
    expect(endpoint.body).toEqual({ state: 'success', target_url: 'https://d.example/jobs/9', description: 'Deployed in 3 s (job 9)', context: 'slipway/web' });
  });
});
