import { describe, expect, it } from 'vitest';
import { githubSignature } from '@slipway/devstack/testing';
import type { JobRecord } from '@slipway/queue/job-types';
import { notificationEvent, notificationPayload, notificationRequest } from './notifications.js';

describe('notificationEvent', () => {
  it.each([
    ['failure', null, ['failure', 'recovery'], 'failure'],
    ['failure', 'failure', ['failure'], 'failure'],
    ['failure', 'success', ['recovery', 'success'], null],
    ['success', 'failure', ['failure', 'recovery'], 'recovery'],
    ['success', 'failure', ['success'], 'recovery'],
    ['success', 'failure', ['failure'], null],
    ['success', 'success', ['failure', 'recovery'], null],
    ['success', null, ['failure', 'recovery'], null],
    ['success', 'success', ['success'], 'success'],
    ['success', null, ['success'], 'success'],
  ] as const)('%s after %s, on %j → %s', (outcome, previous, on, expected) => {
    expect(notificationEvent(outcome, previous, [...on])).toBe(expected);
  });
});

const sha = '6113728f27ae82c7b1a177c8d03f9e96e0adf246';
const record: JobRecord = {
  id: '12', app: 'hello', sha, ref: 'master', image: null, trigger: 'webhook', state: 'failed', attempts: 1,
  createdAt: '2024-05-01T10:00:00.000Z', startedAt: '2024-05-01T10:00:02.000Z', finishedAt: '2024-05-01T10:00:42.500Z',
  error: 'container 0123456789ab never answered 2xx on /healthz', supersededBy: null, retriedBy: null, step: 'health',
  steps: [{ step: 'queued', at: '2024-05-01T10:00:00.000Z' }], result: null,
  push: {
    provider: 'github', delivery: 'd-1', repository: { fullName: 'acme/hello', cloneUrl: 'https://github.com/acme/hello.git', htmlUrl: 'https://github.com/acme/hello' },
    ref: 'refs/heads/master', branch: 'master', sha, before: '0'.repeat(40), pusher: 'ada', message: 'Fix <the> & health\n\nLonger body',
    compareUrl: 'https://github.com/acme/hello/compare/000...611',
  },
};
const payload = notificationPayload(record, 'failure', { dashboard: 'https://deploy.example.com', failureKind: 'failure' });

describe('notifications', () => {
  it('carry app, commit, message, pusher, outcome, duration and links', () => {
    expect(payload).toEqual({
      event: 'failure', app: 'hello', job: '12', outcome: 'failure', state: 'failed', trigger: 'webhook', sha, ref: 'master', image: null,
      message: 'Fix <the> & health\n\nLonger body', pusher: 'ada', step: 'health', error: record.error, durationSeconds: 40.5,
      startedAt: record.startedAt, finishedAt: record.finishedAt,
      links: { job: 'https://deploy.example.com/jobs/12', compare: record.push!.compareUrl, repository: 'https://github.com/acme/hello' },
    });
  });

  it('webhook: the payload, signed over the exact body, with event and delivery headers', () => {
    const request = notificationRequest({ type: 'webhook', url: 'https://hooks.example/in', secret: 'shh', on: ['failure'] }, payload, 'uuid-1');
    expect(JSON.parse(request.body)).toEqual(payload);
    expect(request.headers).toEqual({
      'content-type': 'application/json', 'user-agent': 'Slipway', 'x-slipway-event': 'failure', 'x-slipway-delivery': 'uuid-1',
      'x-slipway-signature-256': githubSignature(request.body, 'shh'),
    });
  });

  it('webhook without a secret: no signature header', () => {
    expect(notificationRequest({ type: 'webhook', url: 'https://hooks.example/in', on: ['failure'] }, payload, 'u').headers['x-slipway-signature-256']).toBeUndefined();
  });

  it('slack: text and blocks, user text escaped, links to the job and the compare view', () => {
    const request = notificationRequest({ type: 'slack', url: 'https://hooks.slack.com/services/T/B/X', on: ['failure'] }, payload, 'u');
    const body = JSON.parse(request.body) as { text: string; blocks: Array<{ type: string; text?: { text: string }; elements?: Array<{ text: string }> }> };
    expect(Object.keys(body).sort()).toEqual(['blocks', 'text']);
    expect(body.text).toBe('hello 6113728: deploy failed at health after 41 s: container 0123456789ab never answered 2xx on /healthz (job 12)');
    expect(body.blocks[0]!.text!.text).toContain('<https://deploy.example.com/jobs/12|job 12> · <https://github.com/acme/hello/compare/000...611|compare>');
    expect(body.blocks[1]!.elements![0]!.text).toBe('Fix &lt;the&gt; &amp; health · pushed by ada · webhook on master');
    // Text from the push or the build is not turned into links or mentions by Slack: only the links written as <url|label>.
    expect([body.blocks[0]!.text, body.blocks[1]!.elements![0]]).toEqual([expect.objectContaining({ verbatim: true }), expect.objectContaining({ verbatim: true })]);
    expect(request.headers['x-slipway-signature-256']).toBeUndefined();
  });

  it('slack: a link cannot end early and mention everyone (a compare URL is the payload\'s)', () => {
    const hostile = { ...payload, links: { ...payload.links, compare: 'https://github.com/x><!channel><https://github.com/y|z' } };
    const body = JSON.parse(notificationRequest({ type: 'slack', url: 'https://hooks.slack.com/services/T/B/X', on: ['failure'] }, hostile, 'u').body) as { blocks: Array<{ text?: { text: string } }> };
    expect(body.blocks[0]!.text!.text).toContain('<https://github.com/x%3E%3C!channel%3E%3Chttps://github.com/y%7Cz|compare>');
    expect(body.blocks[0]!.text!.text).not.toContain('<!channel>');
  });
});
