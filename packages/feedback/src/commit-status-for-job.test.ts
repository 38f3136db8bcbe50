import { describe, expect, it } from 'vitest';
import { commitStatusForJob, type StatusJob } from './commit-status-for-job.js';

const job = (patch: Partial<StatusJob>): StatusJob => ({
  id: '42', app: 'hello', state: 'waiting', step: 'queued', createdAt: '2024-05-01T10:00:00.000Z',
  startedAt: null, finishedAt: null, error: null, supersededBy: null, ...patch,
});
const started = { startedAt: '2024-05-01T10:00:05.000Z' };
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
