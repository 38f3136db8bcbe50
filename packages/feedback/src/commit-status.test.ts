import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { commitStatusForJob, ForgeStatusSender, giteaStatusRequest, githubStatusRequest, gitlabStatusRequest, type CommitStatus, type StatusJob, type StatusTarget } from './commit-status.js';

const job = (patch: Partial<StatusJob>): StatusJob => ({
  id: '42', app: 'hello', state: 'waiting', step: 'queued', createdAt: '2024-05-01T10:00:00.000Z',
  startedAt: null, finishedAt: null, error: null, supersededBy: null, ...patch,
});
const started = { startedAt: '2024-05-01T10:00:05.000Z' };
const run = (name: string, outcome: 'passed' | 'failed' | 'cancelled', exitCode: number | null) =>
  ({ name, outcome, exitCode, image: 'slipway/hello:0123456789ab', startedAt: started.startedAt, durationMs: 1000 });
const dashboard = 'https://deploy.example.com/';

describe('commitStatusForJob', () => {
  it.each([
    [job({}), 'pending', 'Queued as job 42'],
    [job({ state: 'active', step: 'build', ...started }), 'running', 'Deploying: job 42'],
    [job({ state: 'completed', step: 'done', ...started, finishedAt: '2024-05-01T10:01:17.000Z' }), 'success', 'Deployed in 1 min 12 s (job 42)'],
    [job({ state: 'failed', step: 'health', ...started, finishedAt: '2024-05-01T10:00:45.000Z', error: 'container 0123456789ab exited (1)' }), 'failure', 'Failed at health after 40 s: container 0123456789ab exited (1)'],
    [job({ state: 'superseded', supersededBy: '43', finishedAt: '2024-05-01T10:00:02.000Z' }), 'cancelled', 'Not deployed: superseded by job 43, a newer push'],
    [job({ state: 'cancelled', finishedAt: '2024-05-01T10:00:02.000Z' }), 'cancelled', 'Cancelled while queued; not deployed'],
    [job({ state: 'cancelled', step: 'health', ...started, finishedAt: '2024-05-01T10:00:09.000Z' }), 'cancelled', 'Cancelled at health; not deployed'],
    [job({ state: 'failed', step: 'test', ...started, finishedAt: '2024-05-01T10:00:45.000Z', error: 'step_failed: unit exited 1', tests: [run('lint', 'passed', 0), run('unit', 'failed', 1)] }), 'failure', 'Failed at step unit after 40 s: step_failed: unit exited 1'],
    [job({ state: 'cancelled', step: 'test', ...started, finishedAt: '2024-05-01T10:00:09.000Z', tests: [run('e2e', 'cancelled', null)] }), 'cancelled', 'Cancelled at step e2e; not deployed'],
  ] as const)('%# %s', (input, state, description) => {
    expect(commitStatusForJob(input, { dashboard })).toEqual({ state, description, targetUrl: 'https://deploy.example.com/jobs/42', context: 'slipway/hello' });
  });

  it('says error, not failure, when Slipway could not deploy', () => {
    const status = commitStatusForJob(job({ state: 'failed', step: 'checkout', ...started, finishedAt: '2024-05-01T10:00:06.000Z', error: 'etcd is unreachable' }), { dashboard, failureKind: 'error' });
    expect(status).toMatchObject({ state: 'error', description: 'Could not deploy (checkout, 1 s): etcd is unreachable' });
  });

  it('keeps the description within 140 characters', () => {
    const status = commitStatusForJob(job({ state: 'failed', step: 'build', ...started, finishedAt: '2024-05-01T10:00:06.000Z', error: `Step 3/7 : RUN ${'x'.repeat(400)}` }), { dashboard });
    expect(Array.from(status.description).length).toBe(140);
    expect(status.description.endsWith('…')).toBe(true);
  });
});

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
    expect(JSON.parse(githubStatusRequest('x', 't', target('github', 'a/b'), status(state)).body).state).toBe(github);
    expect(JSON.parse(giteaStatusRequest('x', 't', target('gitea', 'a/b'), status(state)).body).state).toBe(gitea);
    expect(JSON.parse(gitlabStatusRequest('x', 't', target('gitlab', 'a/b'), status(state)).body).state).toBe(gitlab);
  });

  it('GitHub: POST /repos/{owner}/{repo}/statuses/{sha} with its media type and the token', () => {
    const request = githubStatusRequest('https://ghe.example/api/v3', 'ghp_x', target('github', 'acme/web'), status('success'));
    expect(request.method).toBe('POST');
    expect(request.url).toBe(`https://ghe.example/api/v3/repos/acme/web/statuses/${sha}`);
    expect(request.headers).toMatchObject({ authorization: 'token ghp_x', accept: 'application/vnd.github+json', 'user-agent': 'Slipway' });
    expect(JSON.parse(request.body)).toEqual({ state: 'success', target_url: 'https://d.example/jobs/9', description: 'Deployed in 3 s (job 9)', context: 'slipway/web' });
  });
});

describe('ForgeStatusSender on GitLab', () => {
  it('takes a refused transition (the state is there already, or a later one) as delivered; another 400 is a failure', async () => {
    let answer = 'Cannot transition status via :run from :running';
    const server = createServer((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: answer }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const apiBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v4`;
      const sender = new ForgeStatusSender({ github: {}, gitea: {}, gitlab: { token: 'glpat-0123456789abcdef' } });
      const target: StatusTarget = { provider: 'gitlab', fullName: 'g/p', apiBase, sha: 'a'.repeat(40), branch: 'main' };
      const running: CommitStatus = { state: 'running', description: 'Deploying: job 42', targetUrl: 'https://deploy.example.com/jobs/42', context: 'slipway/p' };
      await expect(sender.send(target, running, AbortSignal.timeout(5000))).resolves.toBeUndefined();
      answer = 'ref is missing';
      await expect(sender.send(target, running, AbortSignal.timeout(5000))).rejects.toMatchObject({ httpStatus: 400 });
    } finally {
      server.close();
    }
  });
});
