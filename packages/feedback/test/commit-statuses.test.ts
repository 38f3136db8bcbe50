import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { SlipwayConfig } from '@slipway/config/types';
import { type FakeForge, startFakeForge } from '@slipway/devstack/testing';
import type { Push } from '@slipway/queue/job-types';
import { CommitStatuses, ForgeStatusSender, type StatusJob } from '../src/commit-status.js';
import { BackgroundDelivery, type DeliveryOutcome, type RetryPolicy } from '../src/delivery.js';
import { captureLogger } from './capture-logger.js';

const SHA = '6113728f27ae82c7b1a177c8d03f9e96e0adf246';
const TOKENS = { github: 'ghp_Secret0123456789', gitea: 'gitea-Secret0123456789', gitlab: 'glpat-Secret0123456789' };
const FAST: Partial<RetryPolicy> = { attempts: 3, baseDelayMs: 50, maxDelayMs: 200, timeoutMs: 1000 };

type Provider = 'github' | 'gitea' | 'gitlab';

function pushFrom(provider: Provider, web: string, fullName: string): Push {
  return {
    provider, delivery: 'd-1', repository: { fullName, cloneUrl: `${web}/${fullName}.git`, htmlUrl: `${web}/${fullName}` },
    ref: 'refs/heads/main', branch: 'main', sha: SHA, before: '0'.repeat(40), pusher: 'ada', message: 'Ship it', compareUrl: null,
  };
}

function job(push: Push, patch: Partial<StatusJob> = {}): StatusJob & { push: Push } {
  return { id: '7', app: 'hello', state: 'waiting', step: 'queued', createdAt: new Date(Date.now() - 30_000).toISOString(), startedAt: null, finishedAt: null, error: null, supersededBy: null, push, ...patch };
}
const started = () => ({ startedAt: new Date(Date.now() - 20_000).toISOString() });

/** The configured repository of apps `hello` and `other`: where their statuses go, whatever a push names. */
function world(forges: Partial<SlipwayConfig['forges']>, repo: string, retry: Partial<RetryPolicy> = FAST) {
  const log = captureLogger();
  const outcomes: Array<[string, DeliveryOutcome]> = [];
  const delivery = new BackgroundDelivery({ logger: log.logger, retry, onSettled: (target, outcome) => outcomes.push([target, outcome]) });
  const full = { github: {}, gitea: {}, gitlab: {}, ...forges } as SlipwayConfig['forges'];
  const apps = { hello: { repo }, other: { repo } } as unknown as SlipwayConfig['apps'];
  const statuses = new CommitStatuses({ sender: new ForgeStatusSender(full), delivery, dashboard: 'https://deploy.example.com', config: { apps, forges: full } });
  return { ...log, outcomes, delivery, statuses };
}

/** A loopback port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('commit statuses against each forge\'s documented API', () => {
  const forges: FakeForge[] = [];
  const start = async (provider: Provider) => {
    const forge = await startFakeForge({ provider, token: TOKENS[provider] });
    forges.push(forge);
    return forge;
  };
  afterEach(async () => {
    for (const forge of forges.splice(0)) await forge.close();
  });

  it.each([
    ['github', 'acme/hello', ['pending', 'pending', 'success']],
    ['gitea', 'acme/hello', ['pending', 'pending', 'success']],
    ['gitlab', 'group/sub/hello', ['pending', 'running', 'success']],
  ] as const)('%s: queued, running and completed, each request in the documented shape', async (provider, fullName, states) => {
    const forge = await start(provider);
    // GitHub through a configured api_url (as for github.com); Gitea and GitLab derived from the app's configured repository.
    const w = world({ [provider]: { token: TOKENS[provider], ...(provider === 'github' ? { api_url: forge.url } : {}) } }, `${forge.url}/${fullName}.git`);
    const push = pushFrom(provider, forge.url, fullName);

    w.statuses.queued(push, [{ job: '7', app: 'hello' }]);
    await w.delivery.idle();
    w.statuses.post(job(push, { state: 'active', step: 'checkout', ...started() }));
    await w.delivery.idle();
    w.statuses.post(job(push, { state: 'completed', step: 'done', ...started(), finishedAt: new Date().toISOString() }));
    await w.delivery.idle();

    expect(forge.seen.map((s) => s.problems)).toEqual([[], [], []]);
    expect(forge.seen.map((s) => s.status)).toEqual([201, 201, 201]);
    expect(forge.seen.map((s) => s.body.state)).toEqual(states);
    const path = provider === 'gitlab' ? `/api/v4/projects/group%2Fsub%2Fhello/statuses/${SHA}` : `${provider === 'gitea' ? '/api/v1' : ''}/repos/acme/hello/statuses/${SHA}`;
    expect(new Set(forge.seen.map((s) => s.path))).toEqual(new Set([path]));
    const last = forge.seen[2]!.body;
    expect(last.target_url).toBe('https://deploy.example.com/jobs/7');
    expect(last[provider === 'gitlab' ? 'name' : 'context']).toBe('slipway/hello');
    expect(last.description).toBe('Deployed in 20 s (job 7)');
    if (provider === 'gitlab') expect(last.ref).toBe('main');
    expect(w.outcomes).toEqual([[provider, 'delivered'], [provider, 'delivered'], [provider, 'delivered']]);
    expect(w.text()).not.toContain(TOKENS[provider]);
  });

  it.each(['github', 'gitea', 'gitlab'] as const)('%s: the status and its token go to the configured forge, never to the one a signed payload names', async (provider) => {
    const forge = await start(provider);
    const evil = await start(provider);
    const w = world({ [provider]: { token: TOKENS[provider] } }, `${forge.url}/acme/hello.git`);
    // The payload names another forge in every address it has.
    w.statuses.post(job(pushFrom(provider, evil.url, 'acme/hello'), { state: 'active', step: 'build', ...started() }));
    await w.delivery.idle();
    expect(evil.seen).toEqual([]);
    expect(forge.seen.map((s) => s.status)).toEqual([201]);
  });

  it('GitHub Enterprise: without api_url, the API is <forge>/api/v3', async () => {
    const forge = await start('github');
    const w = world({ github: { token: TOKENS.github } }, `${forge.url}/acme/hello.git`);
    w.statuses.post(job(pushFrom('github', forge.url, 'acme/hello'), { state: 'failed', step: 'build', ...started(), finishedAt: new Date().toISOString(), error: 'Step 2/5 : RUN make failed' }), { failureKind: 'failure' });
    await w.delivery.idle();
    expect(forge.seen).toHaveLength(1);
    expect(forge.seen[0]).toMatchObject({ path: `/api/v3/repos/acme/hello/statuses/${SHA}`, problems: [], body: { state: 'failure', description: 'Failed at build after 20 s: Step 2/5 : RUN make failed' } });
  });

  it.each([
    ['github', 'error', 'error'], ['gitea', 'error', 'error'], ['gitlab', 'failed', 'canceled'],
  ] as const)('%s: Slipway\'s error is %s; a superseded job\'s commit ends %s, not pending', async (provider, errorState, supersededState) => {
    const forge = await start(provider);
    const w = world({ [provider]: { token: TOKENS[provider], api_url: forge.api } }, 'https://elsewhere.example/acme/hello.git');
    const push = pushFrom(provider, 'https://elsewhere.example', 'acme/hello');
    w.statuses.post(job(push, { state: 'failed', step: 'checkout', ...started(), finishedAt: new Date().toISOString(), error: 'etcd is unreachable' }), { failureKind: 'error' });
    await w.delivery.idle();
    w.statuses.post(job(push, { id: '8', app: 'other', state: 'superseded', supersededBy: '9', finishedAt: new Date().toISOString() }));
    await w.delivery.idle();
    expect(forge.seen.map((s) => [s.body.state, s.problems])).toEqual([[errorState, []], [supersededState, []]]);
    expect(forge.seen[1]!.body.description).toBe('Not deployed: superseded by job 9, a newer push');
  });

  it('a forge answering 500 is retried with backoff, and the status arrives', async () => {
    const forge = await start('gitea');
    forge.failNext(1, 500);
    const w = world({ gitea: { token: TOKENS.gitea } }, `${forge.url}/acme/hello.git`);
    w.statuses.post(job(pushFrom('gitea', forge.url, 'acme/hello')));
    await w.delivery.idle();
    expect(forge.seen.map((s) => s.status)).toEqual([500, 201]);
    expect(forge.seen[1]!.at - forge.seen[0]!.at).toBeGreaterThanOrEqual(45);
    expect(w.outcomes).toEqual([['gitea', 'delivered']]);
    expect(w.lines.filter((l) => l.level === 40)).toEqual([]);
  });

  it('GitHub answering 502 twice is retried too', async () => {
    const forge = await start('github');
    forge.failNext(2, 502);
    const w = world({ github: { token: TOKENS.github, api_url: forge.url } }, 'https://github.com/acme/hello.git');
    w.statuses.post(job(pushFrom('github', forge.url, 'acme/hello')));
    await w.delivery.idle();
    expect(forge.seen.map((s) => s.status)).toEqual([502, 502, 201]);
    expect(w.outcomes).toEqual([['github', 'delivered']]);
  });

  it('GitHub answering a redirect: the POST and its token are not replayed to where it points, and nothing counts as delivered', async () => {
    const replayed: string[] = [];
    const server = createHttpServer((req, res) => {
      if (req.url?.startsWith('/elsewhere')) {
        replayed.push(`${req.method} ${String(req.headers.authorization)}`);
        res.writeHead(201).end('{}');
        return;
      }
      res.writeHead(307, { location: `/elsewhere${req.url}` }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const w = world({ github: { token: TOKENS.github, api_url: `${url}/api/v3` } }, 'https://github.com/acme/hello.git', { ...FAST, attempts: 1 });
      w.statuses.post(job(pushFrom('github', url, 'acme/hello')));
      await w.delivery.idle();
      expect(replayed).toEqual([]);
      expect(w.outcomes).toEqual([['github', 'failed']]);
      expect(w.text()).not.toContain(TOKENS.github);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('a forge that is down: post returns at once, every attempt fails, the failure is logged once, without the token', async () => {
    const port = await deadPort();
    const w = world({ gitlab: { token: TOKENS.gitlab, api_url: `http://127.0.0.1:${port}/api/v4` } }, 'https://gitlab.example/acme/hello.git');
    const before = performance.now();
    w.statuses.post(job(pushFrom('gitlab', 'https://gitlab.example', 'acme/hello')));
    expect(performance.now() - before, 'returned without waiting on the forge').toBeLessThan(100);
    await w.delivery.idle();
    expect(w.outcomes).toEqual([['gitlab', 'failed']]);
    const warnings = w.lines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ target: 'gitlab', attempts: 3, repository: 'acme/hello', sha: SHA, msg: 'could not deliver the commit status; giving up' });
    expect(w.text()).not.toContain(TOKENS.gitlab);
  });

  it('a refusal (wrong token: 401) is not retried, and is logged once without the token', async () => {
    const forge = await start('github');
    const w = world({ github: { token: 'ghp_WrongToken999', api_url: forge.url } }, 'https://github.com/acme/hello.git');
    w.statuses.post(job(pushFrom('github', forge.url, 'acme/hello')));
    await w.delivery.idle();
    expect(forge.seen.map((s) => s.status)).toEqual([401]);
    expect(w.outcomes).toEqual([['github', 'failed']]);
    expect(w.lines.filter((l) => l.level === 40)).toHaveLength(1);
    expect(w.text()).not.toContain('WrongToken999');
  });

  it('a forge that never answers: each try times out, the caller never waits', async () => {
    const forge = await start('gitea');
    forge.hang();
    const w = world({ gitea: { token: TOKENS.gitea } }, `${forge.url}/acme/hello.git`, { attempts: 2, baseDelayMs: 20, maxDelayMs: 50, timeoutMs: 200 });
    const before = performance.now();
    w.statuses.post(job(pushFrom('gitea', forge.url, 'acme/hello')));
    expect(performance.now() - before, 'returned without waiting on the forge').toBeLessThan(100);
    await w.delivery.idle();
    expect(performance.now() - before).toBeLessThan(2000);
    expect(w.outcomes).toEqual([['gitea', 'failed']]);
    expect(w.lines.find((l) => l.level === 40)?.err).toMatch(/no answer in time/);
  });

  it('statuses of one commit go in order; a newer one replaces an older one still being retried', async () => {
    const forge = await start('gitlab');
    forge.failNext(1, 503);
    const w = world({ gitlab: { token: TOKENS.gitlab } }, `${forge.url}/acme/hello.git`, { attempts: 5, baseDelayMs: 300, maxDelayMs: 300, timeoutMs: 1000 });
    const push = pushFrom('gitlab', forge.url, 'acme/hello');
    w.statuses.post(job(push));
    await new Promise((r) => setTimeout(r, 50));
    w.statuses.post(job(push, { state: 'active', step: 'checkout', ...started() }));
    w.statuses.post(job(push, { state: 'completed', step: 'done', ...started(), finishedAt: new Date().toISOString() }));
    await w.delivery.idle();
    expect(forge.seen.map((s) => [s.body.state, s.status])).toEqual([['pending', 503], ['success', 201]]);
    expect(w.outcomes).toEqual([['gitlab', 'dropped'], ['gitlab', 'dropped'], ['gitlab', 'delivered']]);
  });

  it('a status that is no longer true is not sent (stillWanted), and nothing goes without a token or for a git push', async () => {
    const forge = await start('github');
    const w = world({ github: { token: TOKENS.github, api_url: forge.url } }, 'https://github.com/acme/hello.git');
    w.statuses.queued(pushFrom('github', forge.url, 'acme/hello'), [{ job: '7', app: 'hello' }], { stillQueued: async () => false });
    await w.delivery.idle();
    expect(w.outcomes).toEqual([['github', 'dropped']]);

    const none = world({ github: { api_url: forge.url } }, 'https://github.com/acme/hello.git');
    none.statuses.post(job(pushFrom('github', forge.url, 'acme/hello')));
    w.statuses.post(job({ ...pushFrom('github', forge.url, 'acme/hello'), provider: 'git' }));
    await Promise.all([none.delivery.idle(), w.delivery.idle()]);
    expect(forge.seen).toEqual([]);
    expect(none.outcomes).toEqual([]);
  });
});
