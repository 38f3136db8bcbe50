import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@slipway/config/load-config';
import { commitVersion, createFixtureRepo, type FixtureRepo, freePort, type GitHttpServer, isolatedNginx, type RunningProcess, startGitHttpServer, startLoad, startProcess, tempDir, testAppName, testStack, uniqueName, waitFor, writeTestConfig } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { waitForJob } from '@slipway/queue/follow-job';
import { connectRedis, type Redis } from '@slipway/queue/redis';
import { githubPush, githubRequest, giteaPush, giteaRequest, send, type RepoDescription } from '../support/webhooks.js';

const bin = (app: string) => fileURLToPath(new URL(`../../apps/${app}/bin/slipway-${app}.js`, import.meta.url));
const SECRET = 'e2e-webhook-secret-0123456789';

describe('push to live, all real', () => {
  const tmp = tempDir();
  let git: GitHttpServer;
  let nginx: Awaited<ReturnType<typeof isolatedNginx>>;
  let repo: FixtureRepo & { sha: string };
  let described: RepoDescription;
  let receiverUrl: string;
  let appUrl: string;
  let localRepo: FixtureRepo & { sha: string };
  let localUrl: string;
  let redis: Redis;
  let queue: DeployQueue;
  const processes: RunningProcess[] = [];

  beforeAll(async () => {
    const app = testAppName();
    mkdirSync(join(tmp.path, 'git', 'acme'), { recursive: true });
    repo = await createFixtureRepo(join(tmp.path, 'git', 'acme'), { version: 'e2e v1', name: app });
    git = await startGitHttpServer({ root: join(tmp.path, 'git') });
    described = { fullName: `acme/${app}`, cloneUrl: `${git.url}/acme/${app}.git`, htmlUrl: `${git.url}/acme/${app}` };
    nginx = await isolatedNginx(tmp.path);
    const [listen, receiverPort, localListen] = [await freePort(), await freePort(), await freePort()];
    appUrl = `http://127.0.0.1:${listen}`;
    // An app whose repository is on this machine, given by its path.
    const localApp = `${app}-local`;
    mkdirSync(join(tmp.path, 'local'), { recursive: true });
    localRepo = await createFixtureRepo(join(tmp.path, 'local'), { version: 'local v1', name: localApp });
    localUrl = `http://127.0.0.1:${localListen}`;
    receiverUrl = `http://127.0.0.1:${receiverPort}`;
    const configFile = writeTestConfig(join(tmp.path, 'slipway.yml'), {
      stack: testStack(), nginx, prefix: uniqueName('e2e'), workdir: join(tmp.path, 'work'),
      apps: {
        [app]: { repo: described.cloneUrl, secret: SECRET, replicas: 2, listen: `127.0.0.1:${listen}`, drain_s: 2, stop_timeout_s: 3, health: { interval_ms: 100 } },
        [localApp]: { repo: localRepo.bare, secret: SECRET, replicas: 1, listen: `127.0.0.1:${localListen}`, drain_s: 1, stop_timeout_s: 3, health: { interval_ms: 100 } },
      },
      extra: { receiver: { host: '127.0.0.1', port: receiverPort, metrics: `127.0.0.1:${await freePort()}` } },
    });
    const config = loadConfig({ path: configFile, env: {} });
    redis = connectRedis(config.redis, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    queue = new DeployQueue({ redis, prefix: config.queue.prefix });
    processes.push(startProcess([process.execPath, bin('receiver'), '--config', configFile]));
    processes.push(startProcess([process.execPath, bin('worker'), '--config', configFile]));
    await waitFor('the receiver', async () => (await fetch(`${receiverUrl}/healthz`).catch(() => null))?.ok, { timeoutMs: 20_000 });
  });
  afterAll(async () => {
    for (const p of processes) await p.stop();
    await queue.close();
    redis.disconnect();
    await git.close();
    await nginx.stop();
    tmp.remove();
  });

  const untilDone = (id: string) => waitForJob(queue.store, id, { intervalMs: 50 });

  it('a GitHub JSON push, then a GitHub form push and a Gitea form push, go live under load with no failed request', async () => {
    const first = await send(receiverUrl, githubRequest(githubPush({ repo: described, before: '0'.repeat(40), after: repo.sha }), SECRET));
    expect(first.status).toBe(202);
    expect((await untilDone(String(first.body.job))).state).toBe('completed');
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('e2e v1\n');

    const load = startLoad({ url: appUrl, clients: 4, keepAlive: false, paths: ['/', '/cgi-bin/slow'] });
    const sha2 = await commitVersion(repo, { version: 'e2e v2' });
    const second = await send(receiverUrl, githubRequest(githubPush({ repo: described, before: repo.sha, after: sha2 }), SECRET, true));
    expect(second.status, JSON.stringify(second.body)).toBe(202);
    const done2 = await untilDone(String(second.body.job));
    expect(done2).toMatchObject({ state: 'completed', trigger: 'webhook', sha: sha2, push: { provider: 'github', sha: sha2, branch: 'master' } });
    expect(await fetch(`${appUrl}/`).then((r) => r.text())).toBe('e2e v2\n');

    const sha3 = await commitVersion(repo, { version: 'e2e v3' });
    const third = await send(receiverUrl, giteaRequest(giteaPush({ repo: described, before: sha2, after: sha3 }), SECRET, true));
    expect(third.status, JSON.stringify(third.body)).toBe(202);
    const done3 = await untilDone(String(third.body.job));
    expect(done3).toMatchObject({ state: 'completed', sha: sha3, push: { provider: 'gitea' } });
    await new Promise((r) => setTimeout(r, 300));
    const report = await load.stop();

    expect(report.failures).toEqual([]);
    expect(report.socketErrors).toEqual([]);
    expect(Object.keys(report.bodies).sort()).toEqual(['e2e v1\n', 'e2e v2\n', 'e2e v3\n']);
    expect(report.lastBody).toBe('e2e v3\n');
    expect(report.requests).toBeGreaterThan(20);
  });

  it('a push naming a repository on this machine by its path deploys the app configured with that path', async () => {
    const local = { fullName: 'acme/local', cloneUrl: localRepo.bare, htmlUrl: 'https://github.com/acme/local' };
    const answer = await send(receiverUrl, githubRequest(githubPush({ repo: local, before: '0'.repeat(40), after: localRepo.sha }), SECRET));
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    const done = await untilDone(String(answer.body.job));
    // The payload's links are not the configuration's: none are kept.
    expect(done).toMatchObject({ state: 'completed', push: { repository: { cloneUrl: localRepo.bare, htmlUrl: null }, compareUrl: null } });
    expect(await fetch(`${localUrl}/`).then((r) => r.text())).toBe('local v1\n');
  });
});
