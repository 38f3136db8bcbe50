import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { giteaSignature, githubSignature, testStack } from '@slipway/devstack/testing';
import { docFixture, githubBranchPush, SECRETS, TEST_APPS } from './fixtures.js';
import { startReceiver, type TestReceiver } from './start-receiver.js';

let r: TestReceiver;
beforeAll(async () => {
  r = await startReceiver({ redisUrl: testStack().redis!.url, apps: TEST_APPS });
});
afterAll(() => r.close());

describe('logs', () => {
  it('every line of a request carries its request id and delivery id; no secret, signature or token ever appears', async () => {
    const github = JSON.stringify(githubBranchPush());
    const gitea = JSON.stringify(docFixture('gitea-push'));
    const gitlab = JSON.stringify(docFixture('gitlab-push'));
    const sigs = {
      good: githubSignature(github, SECRETS.hello),
      wrong: githubSignature(github, SECRETS.pings),
      gitea: giteaSignature(gitea, SECRETS.gitea),
    };
    const requests: Array<{ provider: string; delivery: string | null; headers: Record<string, string>; body: string; status: number }> = [];
    const add = (provider: string, delivery: string | null, headers: Record<string, string>, body: string, status: number) => requests.push({ provider, delivery, headers, body, status });
    const repeated = randomUUID();
    add('github', repeated, { 'x-github-event': 'push', 'x-hub-signature-256': sigs.good }, github, 202);
    add('github', repeated, { 'x-github-event': 'push', 'x-hub-signature-256': sigs.good }, github, 200);
    add('github', randomUUID(), { 'x-github-event': 'push', 'x-hub-signature-256': sigs.wrong }, github, 401);
    add('github', randomUUID(), { 'x-github-event': 'push', 'x-hub-signature-256': sigs.good }, github.slice(0, 50), 400);
    add('github', null, { 'x-github-event': 'push', 'x-hub-signature-256': sigs.good }, github, 400);
    add('gitea', randomUUID(), { 'x-gitea-event': 'push', 'x-gitea-signature': sigs.gitea }, gitea, 202);
    add('gitlab', randomUUID(), { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRETS.gitlab }, gitlab, 202);
    add('gitlab', randomUUID(), { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': `${SECRETS.gitlab}-wrong` }, gitlab, 401);

    const ids = new Map<string, string | null>();
    for (const req of requests) {
      const deliveryHeader = req.provider === 'github' ? 'x-github-delivery' : req.provider === 'gitea' ? 'x-gitea-delivery' : 'x-gitlab-event-uuid';
      const headers = { 'content-type': 'application/json', ...req.headers, ...(req.delivery ? { [deliveryHeader]: req.delivery } : {}) };
      const res = await fetch(`${r.url}/hooks/${req.provider}`, { method: 'POST', headers, body: req.body });
      expect(res.status).toBe(req.status);
      ids.set(res.headers.get('x-request-id')!, req.delivery);
    }
    const h = await fetch(`${r.url}/healthz`);
    ids.set(h.headers.get('x-request-id')!, null);

    // The summary line is written when the response closes, just after the client has it.
    await expect.poll(() => new Set(r.logs.filter((l) => l.msg === 'request').map((l) => l.reqId)).size).toBe(ids.size);
    for (const line of r.logs) {
      expect(line).toHaveProperty('reqId');
      expect(line).toHaveProperty('delivery');
      expect(ids.has(line.reqId as string)).toBe(true);
      expect(line.delivery).toBe(ids.get(line.reqId as string));
    }
    // One summary line per request, with status and duration; debug lines besides.
    const summaries = r.logs.filter((l) => l.msg === 'request');
    expect(summaries).toHaveLength(ids.size);
    for (const line of summaries) expect(line).toMatchObject({ status: expect.any(Number), ms: expect.any(Number), level: 30 });
    expect(r.logs.length).toBeGreaterThan(summaries.length);
    expect(summaries.map((l) => (l.http as Record<string, unknown>).outcome)).toEqual(expect.arrayContaining(['queued', 'duplicate', 'bad_signature', 'invalid_payload', 'missing_header']));

    const text = r.logText();
    const forbidden = [...Object.values(SECRETS), sigs.good.slice(7), sigs.wrong.slice(7), sigs.gitea, (docFixture('gitea-push').secret as string)];
    for (const value of forbidden) expect(text).not.toContain(value);
  });
});
