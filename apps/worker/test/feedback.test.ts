import { randomUUID, timingSafeEqual } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '@slipway/config/load-config';
import type { SlipwayConfig } from '@slipway/config/types';
import { commitVersion, createFixtureRepo, type FakeForge, type FixtureRepo, freePort, type GitHttpServer, githubSignature, isolatedNginx, startFakeForge, startGitHttpServer, startLoad, tempDir, testAppName, testStack, uniqueName, waitFor, writeTestConfig } from '@slipway/devstack/testing';
import { serveMetrics } from '@slipway/feedback/metrics';
import { ReceiverFeedback } from '@slipway/feedback/receiver-feedback';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectRedis, type Redis } from '@slipway/queue/redis';
import { createReceiver } from '@slipway/receiver/create-receiver';
import { createDeployWorker, type DeployWorker } from '../src/deploy-worker.js';
import { body, quietLogger, waitForJob, waitForStep } from './support.js';

const WEBHOOK_SECRET = 'feedback-webhook-secret-4Rt7';
const NOTIFY_SECRET = 'notify-secret-Lm3q';
const TOKEN = 'ghp_FeedbackToken0123';
const FAST = { attempts: 3, baseDelayMs: 100, maxDelayMs: 500, timeoutMs: 5000 };

/** The value of one series in a scrape (0 when absent: a counter not yet moved). */
const sample = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
};
/** Feedback follows a job's end (it never holds it up): wait for what it should have done. */
const until = (what: string, probe: () => boolean | Promise<boolean>) => waitFor(what, probe, { timeoutMs: 20_000, intervalMs: 50 });
const scrape = async (url: string) => {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
};

/** A notification endpoint that verifies Slipway's signature as a user's receiver would. */
async function signedReceiver(): Promise<{ url: string; received: Array<{ event: string; verified: boolean; body: Record<string, unknown> }>; close(): Promise<void> }> {
  const received: Array<{ event: string; verified: boolean; body: Record<string, unknown> }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const expected = Buffer.from(githubSignature(raw, NOTIFY_SECRET));
      const given = Buffer.from(String(req.headers['x-slipway-signature-256'] ?? ''));
      const verified = given.length === expected.length && timingSafeEqual(given, expected);
      received.push({ event: String(req.headers['x-slipway-event']), verified, body: JSON.parse(raw.toString('utf8')) as Record<string, unknown> });
      res.writeHead(verified ? 204 : 401).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

interface World {
  app: string;
  repo: FixtureRepo & { sha: string };
  appUrl: string;
  config: SlipwayConfig;
  queue: DeployQueue;
  forge: FakeForge;
  receiverUrl: string;
  /** The receiver's metrics listener (receiver.metrics): /metrics is not on its webhook port. */
  receiverMetricsUrl: string;
  receiverFeedback: ReceiverFeedback;
  /** Push `after` of the app's repository as GitHub would (a fresh delivery id unless given). */
  push(after: string, before: string, delivery?: string): Promise<{ status: number; body: Record<string, unknown> }>;
  startWorker(): Promise<{ worker: DeployWorker; metricsUrl: string }>;
  cleanup(): Promise<void>;
}

async function feedbackWorld(options: { notifyUrl: string; health?: Record<string, unknown> }): Promise<World> {
  const tmp = tempDir();
  const app = testAppName();
  mkdirSync(join(tmp.path, 'git', 'acme'), { recursive: true });
  const repo = await createFixtureRepo(join(tmp.path, 'git', 'acme'), { version: `${app} v1`, name: app });
  const git: GitHttpServer = await startGitHttpServer({ root: join(tmp.path, 'git') });
  const forge = await startFakeForge({ provider: 'github', token: TOKEN });
  const nginx = await isolatedNginx(tmp.path);
  const listen = await freePort();
  const repository = { full_name: `acme/${app}`, clone_url: `${git.url}/acme/${app}.git`, html_url: `${git.url}/acme/${app}` };
  const configFile = writeTestConfig(join(tmp.path, 'slipway.yml'), {
    stack: testStack(), nginx, prefix: uniqueName('fb'), workdir: join(tmp.path, 'work'),
    apps: {
      [app]: {
        repo: repository.clone_url, secret: WEBHOOK_SECRET, replicas: 2, listen: `127.0.0.1:${listen}`, drain_s: 1, stop_timeout_s: 3,
        health: { path: '/healthz', timeout_s: 4, interval_ms: 100, ...options.health },
        notify: [{ type: 'webhook', url: options.notifyUrl, secret: NOTIFY_SECRET, on: ['failure', 'recovery', 'success'] }],
      },
    },
    extra: { forges: { github: { token: TOKEN, api_url: forge.url } }, dashboard: { public_url: 'https://deploy.example.com' } },
  });
  const config = loadConfig({ path: configFile, env: {} });
  const redis: Redis = connectRedis(config.redis, 'producer');
  await new Promise((resolve) => redis.once('ready', resolve));
  const queue = new DeployQueue({ redis, prefix: config.queue.prefix, attempts: config.worker.attempts, backoffMs: config.worker.backoff_ms });
  const receiverFeedback = new ReceiverFeedback({ config, queue, logger: quietLogger, retry: FAST });
  const receiver = createReceiver({ config, queue, logger: quietLogger, metrics: receiverFeedback.metrics, onQueued: receiverFeedback.onQueued }).listen(0, '127.0.0.1');
  await new Promise((resolve) => receiver.once('listening', resolve));
  const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  const receiverMetrics = (await serveMetrics(receiverFeedback.metrics.registry, '127.0.0.1:0', quietLogger, 'receiver'))!;
  const receiverMetricsUrl = `http://127.0.0.1:${(receiverMetrics.address() as AddressInfo).port}`;
  const workers: Array<{ worker: DeployWorker; metrics: Server | null }> = [];

  return {
    app, repo, appUrl: `http://127.0.0.1:${listen}`, config, queue, forge, receiverUrl, receiverMetricsUrl, receiverFeedback,
    async push(after, before, delivery = randomUUID()) {
      const payload = JSON.stringify({
        ref: 'refs/heads/master', before, after, created: false, deleted: false, compare: `${repository.html_url}/compare/${before.slice(0, 12)}...${after.slice(0, 12)}`,
        repository, pusher: { name: 'ada', email: 'ada@example.com' }, head_commit: { id: after, message: `release ${after.slice(0, 7)}` },
      });
      const res = await fetch(`${receiverUrl}/hooks/github`, {
        method: 'POST',
        body: payload,
        headers: {
          'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': delivery,
          'x-hub-signature-256': githubSignature(payload, WEBHOOK_SECRET),
        },
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
    async startWorker() {
      const worker = createDeployWorker({ config, logger: quietLogger, feedbackRetry: FAST });
      const metrics = await serveMetrics(worker.metrics.registry, '127.0.0.1:0', quietLogger);
      workers.push({ worker, metrics });
      await worker.ready();
      return { worker, metricsUrl: `http://127.0.0.1:${(metrics!.address() as AddressInfo).port}` };
    },
    async cleanup() {
      for (const { worker, metrics } of workers) {
        metrics?.close();
        await worker.close(5000);
      }
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
      receiverMetrics.close();
      await receiverFeedback.close(500);
      const keys = await redis.keys(`${config.queue.prefix}:*`).catch(() => [] as string[]);
      if (keys.length) await redis.del(...keys).catch(() => {});
      await queue.close();
      redis.disconnect();
      await Promise.all([git.close(), forge.close(), nginx.stop()]);
      tmp.remove();
    },
  };
}

describe('feedback across real deploys: commit statuses, notifications, /metrics', () => {
  let world: World | undefined;
  let notify: Awaited<ReturnType<typeof signedReceiver>> | undefined;
  afterEach(async () => {
    await world?.cleanup();
    await notify?.close();
    world = undefined;
    notify = undefined;
  });

  it('a push goes pending → running → success on GitHub, a failed rollout → failure, a rollback; the team hears of each; both scrapes move', async () => {
    notify = await signedReceiver();
    world = await feedbackWorld({ notifyUrl: notify.url });
    const { app, repo, forge } = world;
    const ctx = `slipway/${app}`;

    // Before the worker runs, so the receiver's `pending` is certainly still true when it goes out.
    const delivery = randomUUID();
    const first = await world.push(repo.sha, '0'.repeat(40), delivery);
    expect(first.status).toBe(202);
    expect((await world.push(repo.sha, '0'.repeat(40), delivery)).status).toBe(200);
    await world.receiverFeedback.idle();
    const { worker, metricsUrl } = await world.startWorker();
    const done = await waitForJob(world.queue, String(first.body.job));
    expect(done.state, done.error ?? '').toBe('completed');
    expect(await body(`${world.appUrl}/`)).toBe(`${app} v1\n`);

    const statuses = () => forge.seen.filter((s) => s.body.context === ctx);
    await until('the success status and notification', () => statuses().length >= 3 && notify!.received.length >= 1);
    expect(statuses().map((s) => s.problems)).toEqual([[], [], []]);
    expect(statuses().map((s) => [s.body.state, s.body.description])).toEqual([
      ['pending', `Queued as job ${done.id}`],
      ['pending', `Deploying: job ${done.id}`],
      ['success', expect.stringMatching(new RegExp(`^Deployed in \\d+ s \\(job ${done.id}\\)$`))],
    ]);
    expect(new Set(statuses().map((s) => s.path))).toEqual(new Set([`/repos/acme/${app}/statuses/${repo.sha}`]));
    expect(statuses()[2]!.body.target_url).toBe(`https://deploy.example.com/jobs/${done.id}`);
    expect(notify.received.map((n) => [n.event, n.verified])).toEqual([['success', true]]);
    expect(notify.received[0]!.body).toMatchObject({ app, job: done.id, sha: repo.sha, outcome: 'success', pusher: 'ada', message: `release ${repo.sha.slice(0, 7)}` });

    // The same commit again is a replay for the receiver: nothing queued.
    expect((await world.push(repo.sha, repo.sha)).body).toMatchObject({ ignored: 'stale_push' });
    // Deployed again by an operator, under load: every build step but FROM comes from Docker's cache.
    const load = startLoad({ url: world.appUrl, clients: 3, keepAlive: false });
    const again = await world.queue.enqueue({ app, sha: repo.sha, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(world.queue, again.id)).state).toBe('completed');
    const report = await load.stop();
    expect(report.failures).toEqual([]);
    expect(report.socketErrors).toEqual([]);

    // A commit whose containers never get healthy: the rollout fails, the previous release keeps serving.
    const broken = await commitVersion(repo, { version: `${app} v2`, variant: 'unhealthy' });
    const third = await world.push(broken, repo.sha);
    const failed = await waitForJob(world.queue, String(third.body.job));
    expect(failed).toMatchObject({ state: 'failed', step: 'health' });
    expect(await body(`${world.appUrl}/`)).toBe(`${app} v1\n`);

    // Back to the first release, by image (what `slipway rollback` queues): a recovery.
    const rollback = await world.queue.enqueue({ app, sha: repo.sha, ref: null, image: done.result!.image, trigger: 'rollback' });
    expect((await waitForJob(world.queue, rollback.id)).state).toBe('completed');
    await until('the recovery notification', () => notify!.received.length >= 4);
    await worker.context.feedback!.idle();
    await world.receiverFeedback.idle();

    // The receiver's `pending` may lose the race with the running worker (then it is dropped, never sent late).
    const brokenStatuses = forge.seen.filter((s) => s.path.endsWith(broken));
    expect(brokenStatuses.every((s) => s.problems.length === 0)).toBe(true);
    expect(brokenStatuses.map((s) => s.body.description).slice(-2)).toEqual([`Deploying: job ${failed.id}`, expect.stringMatching(/^Failed at health after \d+ s: container [0-9a-f]{12} /)]);
    expect(brokenStatuses.map((s) => s.body.state).slice(-2)).toEqual(['pending', 'failure']);
    expect(notify.received.map((n) => n.event)).toEqual(['success', 'success', 'failure', 'recovery']);
    expect(notify.received.every((n) => n.verified)).toBe(true);

    const receiverText = await scrape(world.receiverMetricsUrl);
    expect(sample(receiverText, 'slipway_webhooks_received_total{provider="github",outcome="queued"}')).toBe(2);
    expect(sample(receiverText, 'slipway_webhooks_received_total{provider="github",outcome="duplicate"}')).toBe(1);
    expect(sample(receiverText, 'slipway_webhooks_received_total{provider="github",outcome="ignored"}')).toBe(1);
    const receiverStatuses = ['delivered', 'dropped'].map((o) => sample(receiverText, `slipway_feedback_deliveries_total{target="github",outcome="${o}"}`));
    expect(receiverStatuses[0]).toBeGreaterThanOrEqual(1);
    expect(receiverStatuses[0]! + receiverStatuses[1]!).toBe(2);
    expect(receiverText).toContain('process_resident_memory_bytes');

    const workerText = await scrape(metricsUrl);
    expect(sample(workerText, `slipway_jobs_finished_total{app="${app}",state="completed"}`)).toBe(3);
    expect(sample(workerText, `slipway_jobs_finished_total{app="${app}",state="failed"}`)).toBe(1);
    expect(sample(workerText, `slipway_rollouts_failed_total{app="${app}",code="health_failed"}`)).toBe(1);
    expect(sample(workerText, `slipway_rollbacks_total{app="${app}",state="completed"}`)).toBe(1);
    expect(sample(workerText, `slipway_deploy_duration_seconds_count{app="${app}",state="completed"}`)).toBe(3);
    expect(sample(workerText, `slipway_deploy_step_duration_seconds_count{app="${app}",step="build"}`)).toBe(3);
    expect(sample(workerText, `slipway_deploy_step_duration_seconds_count{app="${app}",step="switch"}`)).toBe(3);
    expect(sample(workerText, `slipway_build_steps_total{app="${app}"}`)).toBeGreaterThan(0);
    expect(sample(workerText, `slipway_build_cache_hits_total{app="${app}"}`)).toBeGreaterThan(0);
    expect(sample(workerText, `slipway_rollout_drain_open_connections{app="${app}"}`)).toBe(0);
    expect(sample(workerText, 'slipway_queue_jobs{state="waiting"}')).toBe(0);
    expect(sample(workerText, 'slipway_queue_jobs{state="active"}')).toBe(0);
    expect(sample(workerText, 'slipway_queue_oldest_waiting_seconds')).toBe(0);
    expect(sample(workerText, 'slipway_feedback_deliveries_total{target="github",outcome="delivered"}')).toBe(4);
    expect(sample(workerText, 'slipway_feedback_deliveries_total{target="webhook",outcome="delivered"}')).toBe(4);
    expect(workerText).toContain('nodejs_eventloop_lag_seconds');
  });

  it('a forge that never answers and a notification target that is down delay nothing: the deploy completes on time', async () => {
    world = await feedbackWorld({ notifyUrl: `http://127.0.0.1:${await freePort()}/down` });
    const { app, repo, forge } = world;
    forge.hang();
    const { worker, metricsUrl } = await world.startWorker();
    const job = await world.push(repo.sha, '0'.repeat(40));
    expect(job.status).toBe(202);
    const done = await waitForJob(world.queue, String(job.body.job));
    expect(done.state, done.error ?? '').toBe('completed');
    expect(await body(`${world.appUrl}/`)).toBe(`${app} v1\n`);
    // The forge was asked, and kept the requests open, while the deploy went on.
    expect(forge.seen.length).toBeGreaterThanOrEqual(1);
    expect(forge.seen.every((s) => s.status === 0 && s.problems.length === 0)).toBe(true);
    expect(forge.seen.find((s) => s.body.description === `Deploying: job ${done.id}`)!.at).toBeLessThan(Date.parse(done.finishedAt!));
    expect(Date.parse(done.finishedAt!) - Date.parse(done.startedAt!)).toBeLessThan(30_000);
    await until('the job counted', async () => sample(await scrape(metricsUrl), `slipway_jobs_finished_total{app="${app}",state="completed"}`) === 1);

    const closing = Date.now();
    await worker.close(5000);
    expect(Date.now() - closing).toBeLessThan(8000);
  });

  it('a push cancelled while it waits for the app ends cancelled on the commit (error on GitHub), not pending', async () => {
    world = await feedbackWorld({ notifyUrl: `http://127.0.0.1:${await freePort()}/down` });
    const { repo, forge } = world;
    await world.startWorker();
    const slow = await commitVersion(repo, { version: 'slow', buildDelay_s: 3 });
    const first = await world.push(slow, repo.sha);
    await waitForStep(world.queue, String(first.body.job), 'build');
    const next = await commitVersion(repo, { version: 'next' });
    const second = await world.push(next, slow);
    const ofNext = () => forge.seen.filter((s) => s.path.endsWith(next));
    // Cancelled once the receiver's pending is in (a pending still on its way when the job ends is followed by the
    // job's end from the receiver too, a second status this test does not count).
    await until('the pending of the push', () => ofNext().some((s) => s.body.state === 'pending'));
    await new Promise((r) => setTimeout(r, 200));
    await world.queue.cancel(String(second.body.job));
    await until('the cancelled commit\'s final status', () => ofNext().some((s) => s.body.state === 'error'));
    expect(ofNext().every((s) => s.problems.length === 0)).toBe(true);
    expect(ofNext().at(-1)!.body).toMatchObject({ state: 'error', description: expect.stringMatching(/^Cancelled .*; not deployed$/) });
    expect((await waitForJob(world.queue, String(first.body.job))).state).toBe('completed');
    await new Promise((r) => setTimeout(r, 300));
    expect(ofNext().filter((s) => s.body.state === 'error')).toHaveLength(1);
  });
});
