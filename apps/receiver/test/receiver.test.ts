import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { giteaSignature, githubSignature, testStack } from '@slipway/devstack/testing';
import { bullJobId } from '@slipway/queue/deploy-queue';
import { docFixture, githubBranchPush, githubExamples, SECRETS, TEST_APPS } from './fixtures.js';
import { startReceiver, type TestReceiver } from './start-receiver.js';

let r: TestReceiver;
beforeAll(async () => {
  r = await startReceiver({ redisUrl: testStack().redis!.url, apps: TEST_APPS });
});
afterAll(() => r.close());
// Every test sends the forges' example payloads again; see replay.test.ts for the same commit twice.
afterEach(() => r.forgetPushes());

async function post(provider: string, headers: Record<string, string>, body: string) {
  const res = await fetch(`${r.url}/hooks/${provider}`, { method: 'POST', headers, body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

function githubPush(payload: unknown, options: { event?: string; secret?: string; delivery?: string; form?: boolean } = {}) {
  const json = JSON.stringify(payload);
  const body = options.form ? `payload=${encodeURIComponent(json)}` : json;
  return post('github', {
    'content-type': options.form ? 'application/x-www-form-urlencoded' : 'application/json',
    'x-github-event': options.event ?? 'push',
    'x-github-delivery': options.delivery ?? randomUUID(),
    'x-hub-signature-256': githubSignature(body, options.secret ?? SECRETS.hello),
  }, body);
}

const codertocatPush = {
  provider: 'github',
  repository: { fullName: 'Codertocat/Hello-World', cloneUrl: 'https://github.com/Codertocat/Hello-World.git', htmlUrl: 'https://github.com/Codertocat/Hello-World' },
  ref: 'refs/heads/master',
  branch: 'master',
  sha: '6113728f27ae82c7b1a177c8d03f9e96e0adf246',
  before: '0000000000000000000000000000000000000000',
  pusher: 'Codertocat',
  message: 'Initial commit',
  compareUrl: 'https://github.com/Codertocat/Hello-World/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246',
  forced: false,
};

describe('POST /hooks/github with @octokit/webhooks-examples payloads', () => {
  it('queues one job per app of the pushed repository and branch: 202 with the first job and the list', async () => {
    const delivery = randomUUID();
    const res = await githubPush(githubBranchPush(), { delivery });
    expect(res.status).toBe(202);
    const jobs = res.body.jobs as Array<{ job: string; app: string }>;
    expect(jobs.map((j) => j.app)).toEqual(['hello', 'hello-worker']);
    expect(res.body).toEqual({ job: jobs[0]!.job, app: 'hello', jobs });
    for (const { job, app } of jobs) {
      const record = await r.queue.store.get(job);
      expect(record).toMatchObject({ app, sha: codertocatPush.sha, ref: 'master', image: null, trigger: 'webhook', state: 'waiting' });
      expect(record!.push).toEqual({ ...codertocatPush, delivery });
      expect(await r.queue.bull.getJob(bullJobId(job))).toBeDefined();
    }
  });

  it('takes the form-encoded payload= body GitHub can send', async () => {
    const res = await githubPush(githubBranchPush(), { form: true });
    expect(res.status).toBe(202);
    expect((await r.queue.store.get(res.body.job as string))!.push).toMatchObject({ sha: codertocatPush.sha, branch: 'master' });
  });

  it('a redelivery is a duplicate, and stays one after the first job finished and was cleaned up', async () => {
    const delivery = randomUUID();
    const first = await githubPush(githubBranchPush(), { delivery });
    expect(first.status).toBe(202);
    const seq = () => r.redis.get(r.queue.store.keys.seq);
    const lastId = await seq();

    const again = await githubPush(githubBranchPush(), { delivery });
    expect(again).toMatchObject({ status: 200, body: { duplicate: delivery, jobs: first.body.jobs } });

    // The first jobs finish and their records and BullMQ jobs are gone, as retention trimming would leave them.
    for (const { job } of first.body.jobs as Array<{ job: string }>) {
      await r.queue.store.finish(job, 'completed');
      await r.queue.bull.getJob(bullJobId(job)).then((j) => j?.remove());
      await r.redis.del(r.queue.store.keys.job(job));
    }
    const later = await githubPush(githubBranchPush(), { delivery });
    expect(later).toMatchObject({ status: 200, body: { duplicate: delivery } });
    expect(await seq()).toBe(lastId);
    // Remembered for delivery_retention_h (default 72 h).
    const ttl = await r.redis.ttl(r.queue.store.keys.delivery('github', `${delivery}:hello,hello-worker`));
    expect(ttl).toBeGreaterThan(71 * 3600);
    expect(ttl).toBeLessThanOrEqual(72 * 3600);
  });

  it('one event sent to two webhooks of the same repository (apps with secrets of their own, one id): each webhook\'s apps are queued, each redelivery is a duplicate', async () => {
    const other = await startReceiver({ redisUrl: testStack().redis!.url, apps: { web: { ...TEST_APPS.hello }, canary: { ...TEST_APPS.hello, secret: SECRETS.develop } } });
    try {
      const delivery = randomUUID();
      const body = JSON.stringify(githubBranchPush());
      const send = (secret: string) => fetch(`${other.url}/hooks/github`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': delivery, 'x-hub-signature-256': githubSignature(body, secret) },
        body,
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as Record<string, unknown> }));
      const web = await send(SECRETS.hello);
      const canary = await send(SECRETS.develop);
      expect([web, canary]).toMatchObject([{ status: 202, body: { app: 'web' } }, { status: 202, body: { app: 'canary' } }]);
      expect(await send(SECRETS.develop)).toEqual({ status: 200, body: { duplicate: delivery, jobs: [{ job: canary.body.job, app: 'canary' }] } });
      expect(await send(SECRETS.hello)).toEqual({ status: 200, body: { duplicate: delivery, jobs: [{ job: web.body.job, app: 'web' }] } });
    } finally {
      await other.forgetPushes();
      await other.close();
    }
  });

  it('the same delivery id from another forge is another delivery', async () => {
    const delivery = randomUUID();
    expect((await githubPush(githubBranchPush(), { delivery })).status).toBe(202);
    const body = JSON.stringify(docFixture('gitea-push'));
    const res = await post('gitea', { 'content-type': 'application/json', 'x-gitea-event': 'push', 'x-gitea-delivery': delivery, 'x-gitea-signature': giteaSignature(body, SECRETS.gitea) }, body);
    expect(res.status).toBe(202);
  });

  it('ignores, with a reason, every push example that is a tag', async () => {
    const tags = githubExamples('push').filter((e) => String(e.ref).startsWith('refs/tags/'));
    expect(tags.length).toBeGreaterThan(0);
    for (const example of tags) {
      expect(await githubPush(example)).toMatchObject({ status: 200, body: { ignored: 'tag' } });
    }
  });

  it.each([
    ['a branch deletion', (p: Record<string, unknown>) => Object.assign(p, { deleted: true, after: '0'.repeat(40) }), 'branch_deletion'],
    ['another branch', (p: Record<string, unknown>) => Object.assign(p, { ref: 'refs/heads/feature/login' }), 'other_branch'],
  ])('ignores %s', async (_name, change, reason) => {
    expect(await githubPush(change(githubBranchPush()))).toMatchObject({ status: 200, body: { ignored: reason } });
  });

  it('ignores pings (verified with the app\'s secret) and other events', async () => {
    for (const ping of githubExamples('ping')) {
      expect(await githubPush(ping, { event: 'ping', secret: SECRETS.pings })).toMatchObject({ status: 200, body: { ignored: 'ping' } });
    }
    const ping = githubExamples('ping').find((p) => p.repository)!;
    expect(await githubPush(ping, { event: 'ping', secret: SECRETS.hello })).toMatchObject({ status: 401, body: { error: 'bad_signature' } });
    expect(await githubPush(githubExamples('issues')[0], { event: 'issues' })).toMatchObject({ status: 200, body: { ignored: 'event' } });
  });

  it('a push to develop queues only the app of that branch, with its own secret', async () => {
    const payload = Object.assign(githubBranchPush(), { ref: 'refs/heads/develop' });
    const res = await githubPush(payload, { secret: SECRETS.develop });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ job: expect.any(String), app: 'hello-develop' });
  });
});

describe('POST /hooks/gitea with the payload of Gitea\'s documentation', () => {
  const payload = docFixture('gitea-push');
  const json = JSON.stringify(payload);
  const expected = {
    provider: 'gitea',
    repository: { fullName: 'gitea/webhooks', cloneUrl: 'http://localhost:3000/gitea/webhooks.git', htmlUrl: 'http://localhost:3000/gitea/webhooks' },
    ref: 'refs/heads/develop',
    branch: 'develop',
    sha: 'bffeb74224043ba2feb48d137756c8a9331c449a',
    before: '28e1879d029cb852e4844d9c718537df08844e03',
    pusher: 'gitea',
    message: 'Webhooks Yay!',
    compareUrl: 'http://localhost:3000/gitea/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a',
    forced: false,
  };
  const signature = giteaSignature(json, SECRETS.gitea);

  it.each([
    ['Gitea', (d: string) => ({ 'x-gitea-event': 'push', 'x-gitea-delivery': d, 'x-gitea-signature': signature, 'x-gogs-event': 'push', 'x-gogs-delivery': d, 'x-gogs-signature': signature, 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${signature}` })],
    ['Forgejo', (d: string) => ({ 'x-forgejo-event': 'push', 'x-forgejo-delivery': d, 'x-forgejo-signature': signature, 'x-gitea-event': 'push', 'x-gitea-delivery': d, 'x-gitea-signature': signature })],
    ['Gogs', (d: string) => ({ 'x-gogs-event': 'push', 'x-gogs-delivery': d, 'x-gogs-signature': signature })],
  ])('%s headers: 202 and the normalised push, without the payload\'s secret field', async (_name, headers) => {
    const delivery = randomUUID();
    const res = await post('gitea', { 'content-type': 'application/json', ...headers(delivery) }, json);
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ job: expect.any(String), app: 'webhooks' });
    const record = await r.queue.store.get(res.body.job as string);
    expect(record).toMatchObject({ app: 'webhooks', sha: expected.sha, ref: 'develop', trigger: 'webhook' });
    expect(record!.push).toEqual({ ...expected, delivery });
    const stored = JSON.stringify(await r.redis.hgetall(r.queue.store.keys.job(res.body.job as string)));
    expect(stored).not.toContain(payload.secret as string);
  });

  it('takes Gitea\'s form encoding, whose signature covers the JSON inside payload=', async () => {
    const body = `payload=${encodeURIComponent(json).replace(/%20/g, '+')}`;
    const res = await post('gitea', { 'content-type': 'application/x-www-form-urlencoded', 'x-gitea-event': 'push', 'x-gitea-delivery': randomUUID(), 'x-gitea-signature': signature }, body);
    expect(res.status).toBe(202);
  });

  it('refuses a signature made with another app\'s secret', async () => {
    const res = await post('gitea', { 'content-type': 'application/json', 'x-gitea-event': 'push', 'x-gitea-delivery': randomUUID(), 'x-gitea-signature': giteaSignature(json, SECRETS.hello) }, json);
    expect(res).toMatchObject({ status: 401, body: { error: 'bad_signature' } });
  });
});

describe('POST /hooks/gitlab with the payloads of GitLab\'s documentation', () => {
  const json = JSON.stringify(docFixture('gitlab-push'));
  const headers = (token: string, event = 'Push Hook') => ({ 'content-type': 'application/json', 'x-gitlab-event': event, 'x-gitlab-event-uuid': randomUUID(), 'x-gitlab-token': token });

  it('a push with the right token: 202 and the normalised push', async () => {
    const h = headers(SECRETS.gitlab);
    const res = await post('gitlab', h, json);
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ job: expect.any(String), app: 'diaspora' });
    expect((await r.queue.store.get(res.body.job as string))!.push).toEqual({
      provider: 'gitlab',
      delivery: h['x-gitlab-event-uuid'],
      repository: { fullName: 'mike/diaspora', cloneUrl: 'http://example.com/mike/diaspora.git', htmlUrl: 'http://example.com/mike/diaspora' },
      ref: 'refs/heads/master',
      branch: 'master',
      sha: 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
      before: '95790bf891e76fee5e1747ab589903a6a1f80f22',
      pusher: 'jsmith',
      message: 'fixed readme',
      compareUrl: 'http://example.com/mike/diaspora/-/compare/95790bf891e76fee5e1747ab589903a6a1f80f22...da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
      forced: false,
    });
  });

  it('the same Idempotency-Key is a duplicate even with a new event UUID', async () => {
    const key = randomUUID();
    expect((await post('gitlab', { ...headers(SECRETS.gitlab), 'idempotency-key': key }, json)).status).toBe(202);
    expect(await post('gitlab', { ...headers(SECRETS.gitlab), 'idempotency-key': key }, json)).toMatchObject({ status: 200, body: { duplicate: key } });
  });

  it('a wrong token is 401; a tag push is ignored', async () => {
    expect(await post('gitlab', headers(SECRETS.tags), json)).toMatchObject({ status: 401, body: { error: 'bad_signature' } });
    expect(await post('gitlab', headers(SECRETS.tags, 'Tag Push Hook'), JSON.stringify(docFixture('gitlab-tag-push')))).toMatchObject({ status: 200, body: { ignored: 'tag' } });
  });
});

describe('the rest of the contract', () => {
  it('GET /healthz is 200 while Redis answers', async () => {
    const res = await fetch(`${r.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', redis: 'up' });
  });

  it.each([
    ['GET', '/hooks/github', 405, 'method_not_allowed'],
    ['PUT', '/hooks/gitlab', 405, 'method_not_allowed'],
    ['POST', '/healthz', 405, 'method_not_allowed'],
    ['GET', '/', 404, 'not_found'],
    ['POST', '/hooks/bitbucket', 404, 'not_found'],
    ['POST', '/hooks', 404, 'not_found'],
  ])('%s %s → %i JSON', async (method, path, status, code) => {
    const res = await fetch(`${r.url}${path}`, { method });
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toMatchObject({ error: code, message: expect.any(String) });
    if (status === 405) expect(res.headers.get('allow')).toBeTruthy();
  });

  /** Writes `request` as it is on a new connection; resolves with everything answered until the server closes it. */
  const raw = async (request: string, end = false): Promise<string> => {
    const socket = connect(Number(new URL(r.url).port), '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    const closed = once(socket, 'close');
    if (end) socket.end(request);
    else socket.write(request);
    await closed;
    return text;
  };

  it.each([
    ['a control character in a header', 'POST /hooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pu\x01sh\r\nContent-Length: 0\r\n\r\n', false, 400, 'bad_request'],
    ['two different Content-Lengths', 'POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}', false, 400, 'bad_request'],
    ['headers over 16 KB', `POST /hooks/github HTTP/1.1\r\nHost: x\r\nX-Padding: ${'a'.repeat(20_000)}\r\n\r\n`, false, 431, 'headers_too_large'],
    ['a body cut short by the client', 'POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"ref":', true, 400, 'request_aborted'],
  ])('a request node cannot parse (%s) is answered in JSON too', async (_name, request, end, status, code) => {
    const text = await raw(request, end);
    const [head, body] = text.split('\r\n\r\n');
    expect(head, text).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(head).toMatch(/\r\ncontent-type: application\/json/i);
    expect(JSON.parse(body!)).toMatchObject({ error: code, message: expect.any(String) });
  });

  it('answers with a request id', async () => {
    const res = await fetch(`${r.url}/healthz`);
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});
