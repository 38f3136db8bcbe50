import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '@slipway/config/load-config';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { type FakeForge, startFakeForge, startRedisRelay, testStack, uniqueName } from '@slipway/devstack/testing';
import { JobStore } from '@slipway/queue/job-store';
import type { JobRecord, Push } from '@slipway/queue/job-types';
import { connectRedis, type Redis } from '@slipway/queue/redis';
import { DeployFeedback, UNREPORTED_AFTER_MS } from '../src/deploy-feedback.js';
import { WorkerMetrics } from '../src/metrics.js';
import type { NotificationPayload } from '../src/notifications.js';
import { captureLogger } from './capture-logger.js';
import { startSignedReceiver, startSlack, type NotifyTarget } from './notify-targets.js';

const SECRET = 'webhook-Secret-8Qx2';
const sha = (n: number) => n.toString(16).padStart(40, '0');

describe('DeployFeedback: what a job\'s end tells the forge, the team and Prometheus', () => {
  let redis: Redis;
  let store: JobStore;
  const prefix = uniqueName('fb');
  let slack: NotifyTarget;
  let signed: NotifyTarget;
  let every: NotifyTarget;
  let forge: FakeForge;
  let feedback: DeployFeedback;
  let metrics: WorkerMetrics;
  let log: ReturnType<typeof captureLogger>;

  beforeAll(async () => {
    redis = connectRedis(testStack().redis!.url, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    store = new JobStore(redis, prefix);
    [slack, signed, every, forge] = await Promise.all([startSlack(), startSignedReceiver(SECRET), startSignedReceiver(SECRET), startFakeForge({ provider: 'github', token: 'ghp_T0ken' })]);
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await Promise.all([slack.close(), signed.close(), every.close(), forge.close()]);
  });
  afterEach(async () => {
    await feedback?.close();
  });

  function start(app: string, forgeUrl = forge.url) {
    const config = parseConfig(JSON.stringify({
      dashboard: { public_url: 'https://deploy.example.com/' },
      forges: { github: { token: 'ghp_T0ken', api_url: forgeUrl } },
      apps: {
        [app]: {
          repo: 'https://github.com/acme/hello.git',
          notify: [
            { type: 'slack', url: slack.url },
            { type: 'webhook', url: signed.url, secret: SECRET, on: ['failure', 'recovery'] },
            { type: 'webhook', url: every.url, secret: SECRET, on: ['success'] },
          ],
        },
      },
    }), { file: null, env: {} });
    log = captureLogger();
    metrics = new WorkerMetrics({ defaultMetrics: false });
    feedback = new DeployFeedback({ config, store, logger: log.logger, metrics, retry: { attempts: 2, baseDelayMs: 20, timeoutMs: 2000 } });
    return config;
  }

  async function finishedJob(app: string, n: number, state: 'completed' | 'failed' | 'cancelled' | 'superseded', patch: Partial<JobRecord> = {}): Promise<JobRecord> {
    const push: Push = {
      provider: 'github', delivery: `d-${n}`, repository: { fullName: 'acme/hello', cloneUrl: 'https://github.com/acme/hello.git', htmlUrl: 'https://github.com/acme/hello' },
      ref: 'refs/heads/master', branch: 'master', sha: sha(n), before: sha(n - 1), pusher: 'ada', message: `change ${n}`, compareUrl: `https://github.com/acme/hello/compare/${n}`,
    };
    const record = await store.create({ app, sha: sha(n), ref: 'master', image: null, trigger: 'webhook', push });
    await store.update(record.id, { state: 'active', startedAt: new Date().toISOString() });
    await store.step(record.id, 'checkout');
    await store.step(record.id, state === 'completed' ? 'done' : 'build');
    return store.finish(record.id, state, patch);
  }

  it('a failure, then a recovery, then a success: each target hears what it asked for, signed', async () => {
    const app = uniqueName('app');
    start(app);
    const failed = await finishedJob(app, 1, 'failed', { error: 'Step 2/4 : RUN make failed' });
    feedback.finished(failed, new SlipwayError('build_failed', 'Step 2/4 : RUN make failed', { fault: 'commit' }));
    await feedback.idle();
    const recovered = await finishedJob(app, 2, 'completed');
    feedback.finished(recovered);
    await feedback.idle();
    const again = await finishedJob(app, 3, 'completed');
    feedback.finished(again);
    await feedback.idle();

    expect(slack.received.map((r) => (r.body.text as string).split(':')[0])).toEqual([`${app} ${sha(1).slice(0, 7)}`, `${app} ${sha(2).slice(0, 7)}`]);
    expect(slack.received[0]!.body.text).toContain('deploy failed at build');
    expect(slack.received[1]!.body.text).toContain('recovered');

    expect(signed.received.map((r) => [r.headers['x-slipway-event'], r.verified])).toEqual([['failure', true], ['recovery', true]]);
    const payload = JSON.parse(signed.received[0]!.raw.toString('utf8')) as NotificationPayload;
    expect(payload).toMatchObject({
      event: 'failure', app, job: failed.id, outcome: 'failure', sha: sha(1), message: 'change 1', pusher: 'ada', step: 'build', error: 'Step 2/4 : RUN make failed',
      links: { job: `https://deploy.example.com/jobs/${failed.id}`, compare: 'https://github.com/acme/hello/compare/1' },
    });
    expect(payload.durationSeconds).toBeGreaterThanOrEqual(0);
    expect(new Set(signed.received.map((r) => r.headers['x-slipway-delivery'])).size).toBe(2);

    expect(every.received.map((r) => [r.headers['x-slipway-event'], r.verified])).toEqual([['recovery', true], ['success', true]]);

    const states = forge.seen.filter((s) => s.body.context === `slipway/${app}`).map((s) => [s.body.state, s.problems]);
    expect(states).toEqual([['failure', []], ['success', []], ['success', []]]);
    expect(log.text()).not.toContain(SECRET);
    expect(log.text()).not.toContain('XXXXSECRETPATH');

    const text = await metrics.registry.metrics();
    expect(text).toContain(`slipway_jobs_finished_total{app="${app}",state="failed"} 1`);
    expect(text).toContain(`slipway_jobs_finished_total{app="${app}",state="completed"} 2`);
    expect(text).toContain(`slipway_deploy_step_duration_seconds_count{app="${app}",step="checkout"} 3`);
    expect(text).toContain('slipway_feedback_deliveries_total{target="slack",outcome="delivered"} 2');
    expect(text).toContain('slipway_feedback_deliveries_total{target="webhook",outcome="delivered"} 4');
    expect(text).toContain('slipway_feedback_deliveries_total{target="github",outcome="delivered"} 3');
  });

  it('a forge that hangs does not hold back the team\'s notifications: statuses and notifications have requests of their own', async () => {
    const app = uniqueName('app');
    const hung = await startFakeForge({ provider: 'github', token: 'ghp_T0ken' });
    try {
      hung.hang();
      const config = start(app, hung.url);
      await feedback.close();
      feedback = new DeployFeedback({ config, store, logger: log.logger, metrics, retry: { attempts: 1, timeoutMs: 10_000 } });
      // More statuses than requests a pool has (8), each waiting on the forge.
      for (let n = 40; n < 50; n++) feedback.finished(await finishedJob(app, n, 'completed'));
      await expect.poll(() => hung.seen.length, { timeout: 3000 }).toBe(8);
      const failed = await finishedJob(app, 50, 'failed', { error: 'health check failed', fault: 'commit' });
      feedback.finished(failed, new SlipwayError('health_failed', 'health check failed', { fault: 'commit' }));
      await expect.poll(() => slack.received.filter((r) => (r.body.text as string).startsWith(`${app} ${sha(50).slice(0, 7)}`)).length, { timeout: 3000 }).toBe(1);
      await feedback.close(100);
    } finally {
      await hung.close();
    }
  });

  it('Slipway\'s own error is `error` on the commit and in the payload', async () => {
    const app = uniqueName('app');
    start(app);
    const failed = await finishedJob(app, 4, 'failed', { error: 'etcd is unreachable' });
    feedback.finished(failed, new UnavailableError('etcd', 'etcd is unreachable'));
    await feedback.idle();
    expect(forge.seen.filter((s) => s.body.context === `slipway/${app}`).map((s) => s.body.state)).toEqual(['error']);
    const payload = signed.received.map((r) => JSON.parse(r.raw.toString('utf8')) as NotificationPayload).find((p) => p.app === app);
    expect(payload).toMatchObject({ event: 'failure', outcome: 'error' });
  });

  it('a cancellation heard by several workers is reported once', async () => {
    const app = uniqueName('app');
    start(app);
    const other = new DeployFeedback({ config: { forges: { github: { token: 'ghp_T0ken', api_url: forge.url }, gitea: {}, gitlab: {} }, dashboard: { host: '127.0.0.1', port: 3001, allowed_hosts: [] }, apps: {} }, store, logger: log.logger, metrics });
    const cancelled = await finishedJob(app, 5, 'cancelled', { error: 'cancelled while waiting' });
    feedback.cancelled(cancelled.id);
    other.cancelled(cancelled.id);
    feedback.finished(cancelled);
    await Promise.all([feedback.idle(), other.idle()]);
    await other.close();
    expect(forge.seen.filter((s) => s.body.context === `slipway/${app}`).map((s) => [s.body.state, s.body.description])).toEqual([['error', 'Cancelled at build; not deployed']]);
    expect(await metrics.registry.metrics()).toContain(`slipway_jobs_finished_total{app="${app}",state="cancelled"} 1`);
  });
  it('a cancellation whose claim ioredis sent again (its answer lost) is still reported', async () => {
    const app = uniqueName('app');
    const relay = await startRedisRelay(testStack().redis!.url);
    const relayed = connectRedis(relay.url, 'worker');
    try {
      // A second worker's feedback, its Redis through the relay.
      const worker = new DeployFeedback({ config: start(app), store: new JobStore(relayed, prefix), logger: log.logger, metrics: new WorkerMetrics({ defaultMetrics: false }) });
      const cancelled = await finishedJob(app, 6, 'cancelled', { error: 'cancelled while waiting' });
      await relayed.ping();
      relay.dropReplyTo(`:job:${cancelled.id}:feedback-reported`);
      worker.finished(cancelled);
      await worker.idle();
      await worker.close();
      expect(relay.drops()).toBe(1);
      expect(forge.seen.filter((s) => s.body.context === `slipway/${app}`).map((s) => s.body.state)).toEqual(['error']);
    } finally {
      relayed.disconnect();
      relay.close();
    }
  });
  it('a recovery is told however many pushes were superseded between the failure and the deploy that fixed it', async () => {
    const app = uniqueName('app');
    start(app);
    const failed = await finishedJob(app, 20, 'failed', { error: 'health check failed' });
    feedback.finished(failed, new SlipwayError('health_failed', 'health check failed', { fault: 'commit' }));
    await feedback.idle();
    // A burst of 60 pushes behind it, each replaced by the next.
    for (let n = 21; n <= 80; n++) {
      const waiting = await store.create({ app, sha: sha(n), ref: 'master', image: null, trigger: 'webhook' });
      await store.finish(waiting.id, 'superseded', { supersededBy: String(Number(waiting.id) + 1) });
    }
    feedback.finished(await finishedJob(app, 81, 'completed'));
    await feedback.idle();
    expect(signed.received.filter((r) => (JSON.parse(r.raw.toString('utf8')) as NotificationPayload).app === app).map((r) => r.headers['x-slipway-event'])).toEqual(['failure', 'recovery']);
  });

  it('a job finished twice (given up as worker_lost, then finished by an attempt past its switch) is reported once', async () => {
    const app = uniqueName('app');
    const worker = new DeployFeedback({ config: start(app), store, logger: log.logger, metrics: new WorkerMetrics({ defaultMetrics: false }) });
    const failed = await finishedJob(app, 8, 'failed', { error: 'worker_lost: the workers running it died 3 times' });
    worker.finished(failed);
    worker.finished(await store.finish(failed.id, 'completed'));
    await worker.idle();
    await worker.close();
    expect(forge.seen.filter((s) => s.body.context === `slipway/${app}`).map((s) => s.body.state)).toEqual(['error']);
  });
  it('a push superseded by a job of the same commit (an operator\'s deploy of it) shows that job on the commit, not "Not deployed"', async () => {
    const app = uniqueName('app');
    start(app);
    const ofApp = () => forge.seen.filter((s) => s.body.context === `slipway/${app}`).map((s) => [s.body.state, s.body.description]);
    // Live already: the CLI's deploy of the commit completed before the push's job was taken up.
    const cli = await store.create({ app, sha: sha(40), ref: 'master', image: null, trigger: 'cli' });
    await store.update(cli.id, { state: 'active', startedAt: new Date().toISOString() });
    const done = await store.finish(cli.id, 'completed');
    feedback.finished(done);
    feedback.finished(await finishedJob(app, 40, 'superseded', { supersededBy: cli.id }));
    await feedback.idle();
    expect(ofApp()).toEqual([['success', expect.stringContaining(`(job ${cli.id})`)]]);

    // Still deploying: nothing over what the commit shows until it ends; then its end (it took the push's forge address).
    const running = await store.create({ app, sha: sha(41), ref: 'master', image: null, trigger: 'git-push' });
    await store.update(running.id, { state: 'active', startedAt: new Date().toISOString() });
    feedback.finished(await finishedJob(app, 41, 'superseded', { supersededBy: running.id }));
    await feedback.idle();
    expect(ofApp().slice(1)).toEqual([]);
    feedback.finished(await store.finish(running.id, 'failed', { error: 'health_failed: no answer', fault: 'commit' }));
    await feedback.idle();
    expect(ofApp().slice(1)).toEqual([['failure', expect.stringContaining('health_failed: no answer')]]);

    // Failed and re-run before the push's end was reported (late, by a sweep): the re-run is what the commit shows.
    const operator = await store.create({ app, sha: sha(42), ref: 'master', image: null, trigger: 'cli' });
    await store.update(operator.id, { state: 'active', startedAt: new Date().toISOString() });
    await store.finish(operator.id, 'failed', { error: 'etcd unreachable', fault: 'slipway' });
    const rerun = await store.create({ app, sha: sha(42), ref: 'master', image: null, trigger: 'retry', retryOf: operator.id });
    await store.update(operator.id, { retriedBy: rerun.id });
    await store.update(rerun.id, { state: 'active', startedAt: new Date().toISOString() });
    await store.finish(rerun.id, 'completed');
    feedback.finished(await finishedJob(app, 42, 'superseded', { supersededBy: operator.id }));
    await feedback.idle();
    expect(ofApp().slice(2)).toEqual([['success', expect.stringContaining(`(job ${rerun.id})`)]]);
  });

  it('an end no worker reported (its worker died after finishing the job) is reported by the next sweep, once', async () => {
    const app = uniqueName('app');
    start(app);
    const done = await finishedJob(app, 30, 'completed');
    const later = Date.now() + UNREPORTED_AFTER_MS + 1000;
    // Too fresh: the worker that finished it may be about to report it.
    expect(await feedback.reportUnreported([app])).toBe(0);
    expect(await feedback.reportUnreported([app], later)).toBe(1);
    await feedback.idle();
    expect(forge.seen.filter((s) => s.body.context === `slipway/${app}`).map((s) => s.body.state)).toEqual(['success']);
    expect(await feedback.reportUnreported([app], later)).toBe(0);
    feedback.finished(done);
    await feedback.idle();
    expect(forge.seen.filter((s) => s.body.context === `slipway/${app}`)).toHaveLength(1);
  });

  it('a worker that stops before its final status went out (the forge answering 502) hands it back: another worker sends it', async () => {
    const app = uniqueName('app');
    const config = start(app);
    const stopping = new DeployFeedback({ config, store, logger: log.logger, metrics, retry: { attempts: 5, baseDelayMs: 2000, timeoutMs: 2000 } });
    const ofApp = () => forge.seen.filter((s) => s.body.context === `slipway/${app}`);
    const failed = await finishedJob(app, 31, 'failed', { error: 'health check failed', fault: 'commit' });
    forge.failNext(1, 502);
    stopping.finished(failed, new SlipwayError('health_failed', 'health check failed', { fault: 'commit' }));
    await expect.poll(() => ofApp().length, { timeout: 2000 }).toBe(1);
    await stopping.close(1000);
    expect(await feedback.reportUnreported([app], Date.now() + UNREPORTED_AFTER_MS + 1000)).toBe(1);
    await feedback.idle();
    expect(ofApp().map((s) => [s.body.state, s.status])).toEqual([['failure', 502], ['failure', 201]]);
    // Only the status is sent again: the team heard of the failure once, and it is counted once.
    expect(slack.received.filter((r) => r.raw.toString('utf8').includes(app))).toHaveLength(1);
    expect(await feedback.reportUnreported([app], Date.now() + UNREPORTED_AFTER_MS + 1000)).toBe(0);
  });

  it('a final status still being retried is not sent once its job was re-run: the re-run\'s statuses are on the same commit and context', async () => {
    const app = uniqueName('app');
    const worker = new DeployFeedback({ config: start(app), store, logger: log.logger, metrics, retry: { attempts: 3, baseDelayMs: 500, timeoutMs: 2000 } });
    const failed = await finishedJob(app, 7, 'failed', { error: 'health check failed' });
    const ofApp = () => forge.seen.filter((s) => s.body.context === `slipway/${app}`);
    forge.failNext(1, 502);
    worker.finished(failed, new SlipwayError('health_failed', 'health check failed', { fault: 'commit' }));
    await expect.poll(() => ofApp().length, { timeout: 2000 }).toBe(1);
    // `slipway retry` while the forge is answered again in 0.5 s: the re-run (another worker) posts its own statuses.
    await store.update(failed.id, { retriedBy: 'the-re-run' });
    await worker.idle();
    await worker.close();
    expect(ofApp().map((s) => [s.body.state, s.status])).toEqual([['failure', 502]]);
  });
});
