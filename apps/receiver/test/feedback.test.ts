import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '@slipway/core/logger';
import { parseConfig } from '@slipway/config/load-config';
import { type FakeForge, githubSignature, startFakeForge, testStack, uniqueName } from '@slipway/devstack/testing';
import { ReceiverFeedback } from '@slipway/feedback/receiver-feedback';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectReceiverRedis, createReceiver } from '../src/create-receiver.js';
import { githubBranchPush, githubExamples, SECRETS, TEST_APPS } from './fixtures.js';

const TOKEN = 'ghp_ReceiverToken0123';
const quiet = createLogger({ name: 'test', level: 'silent' });

interface World {
  url: string;
  /** The metrics listener, as main.ts serves it on receiver.metrics. */
  metricsUrl: string;
  queue: DeployQueue;
  feedback: ReceiverFeedback;
  close(): Promise<void>;
}

async function start(forge: FakeForge, retry = { attempts: 3, baseDelayMs: 100, maxDelayMs: 300, timeoutMs: 5000 }): Promise<World> {
  const prefix = uniqueName('recvfb');
  const config = parseConfig(JSON.stringify({
    redis: testStack().redis!.url, queue: { prefix }, apps: TEST_APPS, forges: { github: { token: TOKEN, api_url: forge.url } },
  }), { file: null, env: {} });
  const redis = connectReceiverRedis(config.redis);
  if (redis.status !== 'ready') await new Promise((resolve) => redis.once('ready', resolve));
  const queue = new DeployQueue({ redis, prefix, attempts: 1 });
  const feedback = new ReceiverFeedback({ config, queue, logger: quiet, retry });
  const server: Server = createReceiver({ config, queue, logger: quiet, metrics: feedback.metrics, onQueued: feedback.onQueued }).listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const metricsServer = (await feedback.serveMetrics('127.0.0.1:0'))!;
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    metricsUrl: `http://127.0.0.1:${(metricsServer.address() as AddressInfo).port}`,
    queue,
    feedback,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await new Promise((resolve) => metricsServer.close(resolve));
      await feedback.close(200);
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      await queue.close();
      redis.disconnect();
    },
  };
}

async function github(url: string, payload: unknown, options: { event?: string; delivery?: string; secret?: string } = {}) {
  const body = JSON.stringify(payload);
  const res = await fetch(`${url}/hooks/github`, {
    method: 'POST', body,
    headers: {
      'content-type': 'application/json', 'x-github-event': options.event ?? 'push', 'x-github-delivery': options.delivery ?? randomUUID(),
      'x-hub-signature-256': githubSignature(body, options.secret ?? SECRETS.hello),
    },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const sample = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
};

describe('the receiver\'s feedback: /metrics and pending commit statuses', () => {
  let forge: FakeForge | undefined;
  let world: World | undefined;
  afterEach(async () => {
    await world?.close();
    await forge?.close();
    world = undefined;
    forge = undefined;
  });

  it('counts webhooks by provider and outcome on the metrics listener (not the webhook port), and posts pending for each queued job', async () => {
    forge = await startFakeForge({ provider: 'github', token: TOKEN });
    world = await start(forge);
    const delivery = randomUUID();
    const queued = await github(world.url, githubBranchPush(), { delivery });
    expect(queued.status).toBe(202);
    expect((await github(world.url, githubBranchPush(), { delivery })).status).toBe(200);
    expect((await github(world.url, githubExamples('ping')[0], { event: 'ping', secret: SECRETS.pings })).status).toBe(200);
    expect((await github(world.url, githubBranchPush(), { secret: 'wrong' })).status).toBe(401);
    expect((await fetch(`${world.url}/hooks/bitbucket`, { method: 'POST', body: '{}' })).status).toBe(404);
    await world.feedback.idle();

    const res = await fetch(`${world.metricsUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(sample(text, 'slipway_webhooks_received_total{provider="github",outcome="queued"}')).toBe(1);
    expect(sample(text, 'slipway_webhooks_received_total{provider="github",outcome="duplicate"}')).toBe(1);
    expect(sample(text, 'slipway_webhooks_received_total{provider="github",outcome="ignored"}')).toBe(1);
    expect(sample(text, 'slipway_webhooks_received_total{provider="github",outcome="rejected_4xx"}')).toBe(1);
    expect(sample(text, 'slipway_webhooks_received_total{provider="unknown",outcome="rejected_4xx"}')).toBe(1);
    expect(sample(text, 'slipway_feedback_deliveries_total{target="github",outcome="delivered"}')).toBe(2);
    expect(text).toContain('process_cpu_user_seconds_total');
    expect((await fetch(`${world.metricsUrl}/metrics`, { method: 'POST' })).status).toBe(405);
    // The webhook port faces the forges (compose publishes it): no metrics there.
    const onWebhookPort = await fetch(`${world.url}/metrics`);
    expect(onWebhookPort.status).toBe(404);
    expect(await onWebhookPort.json()).toEqual({ error: 'not_found', message: 'no such endpoint' });

    const jobs = queued.body.jobs as Array<{ job: string; app: string }>;
    expect(forge.seen.map((s) => s.problems)).toEqual([[], []]);
    expect(forge.seen.map((s) => [s.path, s.body])).toEqual(jobs.map(({ job, app }) => [
      '/repos/Codertocat/Hello-World/statuses/6113728f27ae82c7b1a177c8d03f9e96e0adf246',
      { state: 'pending', target_url: `http://127.0.0.1:3001/jobs/${job}`, description: `Queued as job ${job}`, context: `slipway/${app}` },
    ]));
  });

  it('a forge that never answers does not slow the answer to the webhook', async () => {
    forge = await startFakeForge({ provider: 'github', token: TOKEN });
    forge.hang();
    world = await start(forge);
    const started = performance.now();
    const res = await github(world.url, githubBranchPush());
    expect(res.status).toBe(202);
    expect(performance.now() - started).toBeLessThan(1000);
    await expect.poll(() => forge!.seen.length, { timeout: 5000 }).toBe(2);
  });

  it('a pending the forge took while the worker started the job is followed by running again: the commit does not say "Queued" through the deploy', async () => {
    forge = await startFakeForge({ provider: 'github', token: TOKEN });
    // The forge applies the pendings 400 ms after they were sent; the worker starts the jobs in the meantime
    // (its own running, sent at the same moment, may be applied first).
    forge.delayNext(2, 400);
    world = await start(forge);
    const res = await github(world.url, githubBranchPush());
    const jobs = res.body.jobs as Array<{ job: string; app: string }>;
    // The pendings reached the forge (the receiver looked whether the jobs were still queued just before sending them).
    await expect.poll(() => forge!.received, { timeout: 5000 }).toBe(2);
    for (const { job } of jobs) await world.queue.store.update(job, { state: 'active', startedAt: new Date().toISOString() });
    await expect.poll(() => forge!.seen.length, { timeout: 3000 }).toBe(4);
    await world.feedback.idle();
    for (const { job, app } of jobs) {
      const last = forge.seen.filter((s) => s.body.context === `slipway/${app}`).at(-1)!;
      expect(last.body.description).toBe(`Deploying: job ${job}`);
    }
  });

  it('a pending or running the forge took after the job ended is followed by its end: the commit does not say "Queued" or "Deploying" after it', async () => {
    forge = await startFakeForge({ provider: 'github', token: TOKEN });
    // Each of the receiver's first two rounds (the pendings, then the runnings that follow them) is applied 400 ms late.
    forge.delayNext(4, 400);
    world = await start(forge);
    const res = await github(world.url, githubBranchPush());
    const [first, second] = res.body.jobs as Array<{ job: string; app: string }>;
    const { store } = world.queue;
    await expect.poll(() => forge!.received, { timeout: 5000 }).toBe(2);
    // The first job ends while its pending is on its way; the second is running when its pending lands, and ends while its running is on its way.
    await store.update(first!.job, { state: 'active', startedAt: new Date().toISOString() });
    await store.finish(first!.job, 'failed', { error: 'build failed: step 3', fault: 'commit' });
    await store.update(second!.job, { state: 'active', startedAt: new Date().toISOString() });
    await expect.poll(() => forge!.seen.filter((s) => s.body.context === `slipway/${second!.app}`).length, { timeout: 3000 }).toBe(1);
    await new Promise((r) => setTimeout(r, 100));
    await store.finish(second!.job, 'completed', { result: { image: 'x' } });
    await expect.poll(() => forge!.seen.filter((s) => s.body.context === `slipway/${second!.app}`).length, { timeout: 3000 }).toBe(3);
    await world.feedback.idle();
    const last = (app: string) => forge!.seen.filter((s) => s.body.context === `slipway/${app}`).at(-1)!.body;
    expect(last(first!.app)).toMatchObject({ state: 'failure', description: expect.stringMatching(/^Failed at queued after .*: build failed: step 3$/) });
    expect(last(second!.app)).toMatchObject({ state: 'success', description: expect.stringMatching(new RegExp(`^Deployed in .* \\(job ${second!.job}\\)$`)) });
    expect(forge.seen.length).toBe(5);
  });

  it('a pending that failed once is not retried after the worker started the job: what the job is now follows it instead', async () => {
    forge = await startFakeForge({ provider: 'github', token: TOKEN });
    forge.failNext(2, 503);
    // The retry comes 2 s after the failure: well after the jobs start below, however loaded the machine (500 ms was not, under CI).
    world = await start(forge, { attempts: 3, baseDelayMs: 2000, maxDelayMs: 2000, timeoutMs: 5000 });
    const res = await github(world.url, githubBranchPush());
    const jobs = res.body.jobs as Array<{ job: string }>;
    await expect.poll(() => forge!.received, { timeout: 5000 }).toBe(2);
    for (const { job } of jobs) await world.queue.store.update(job, { state: 'active', startedAt: new Date().toISOString() });
    // A 503 may have been applied late all the same: what the job is now follows it (one `Deploying` per job), but the
    // pending itself is never sent again.
    await expect.poll(() => forge!.seen.length, { timeout: 10_000 }).toBe(4);
    await world.feedback.idle();
    await new Promise((r) => setTimeout(r, 300));
    const said = forge.seen.map((s) => `${s.status} ${s.body.description}`);
    expect(said.slice(0, 2).sort()).toEqual(jobs.map(({ job }) => `503 Queued as job ${job}`).sort());
    expect(said.slice(2).sort()).toEqual(jobs.map(({ job }) => `201 Deploying: job ${job}`).sort());
    expect(sample(await (await fetch(`${world.metricsUrl}/metrics`)).text(), 'slipway_feedback_deliveries_total{target="github",outcome="dropped"}')).toBe(2);
  });
});
