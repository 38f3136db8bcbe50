import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { githubSignature, testStack } from '@slipway/devstack/testing';
import { githubBranchPush, SECRETS, TEST_APPS } from './fixtures.js';
import { startReceiver, type TestReceiver } from './start-receiver.js';

let r: TestReceiver;
beforeAll(async () => {
  r = await startReceiver({ redisUrl: testStack().redis!.url, apps: { hello: TEST_APPS.hello } });
});
afterAll(() => r.close());

const sha = (n: number) => n.toString(16).padStart(40, 'c');

/** A signed push body for commit `n`: what someone who captured one could send again. */
function signedPush(n: number, patch: Record<string, unknown> = {}) {
  const body = JSON.stringify({ ...githubBranchPush(), after: sha(n), before: sha(n - 1), ...patch });
  return { body, signature: githubSignature(body, SECRETS.hello) };
}

async function send(push: { body: string; signature: string }, delivery = randomUUID()) {
  const res = await fetch(`${r.url}/hooks/github`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': delivery, 'x-hub-signature-256': push.signature },
    body: push.body,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('replayed and stale pushes (the delivery id is a header the signature does not cover)', () => {
  it('the same signed body with a fresh delivery id is a duplicate of the first: nothing new is queued', async () => {
    const captured = signedPush(10);
    const first = await send(captured);
    expect(first.status).toBe(202);
    const before = (await r.jobs()).length;
    const replay = await send(captured);
    expect(replay).toEqual({ status: 200, body: { duplicate: expect.any(String), jobs: [{ job: first.body.job, app: 'hello' }] } });
    expect((await r.jobs()).length).toBe(before);
    // Replayed at will with fresh ids, it leaves nothing behind: only a delivery that queued something is remembered.
    const deliveries = async () => (await r.redis.keys(`${r.prefix}:delivery:*`)).length;
    const remembered = await deliveries();
    for (let i = 0; i < 5; i++) expect((await send(captured)).status).toBe(200);
    expect(await deliveries()).toBe(remembered);
  });

  it('a push of the live commit or one of its ancestors is ignored as stale_push, unless forced', async () => {
    // Commit 22 is live; 21 and 20 are behind it.
    await r.queue.store.recordLive('hello', { sha: sha(22), job: '5' }, [sha(22), sha(21), sha(20)]);
    const before = (await r.jobs()).length;
    for (const n of [22, 21]) {
      const res = await send(signedPush(n));
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ ignored: 'stale_push', message: expect.stringContaining(`commit ${sha(n)} is already live for hello`) });
    }
    expect((await r.jobs()).length).toBe(before);
    expect((await send(signedPush(20, { forced: true }))).status).toBe(202);
    expect((await send(signedPush(23))).status).toBe(202);
  });
});
