import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testStack, uniqueName } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectRedis, type Redis } from '@slipway/queue/redis';
import { ReceiverMetrics, serveMetrics, WorkerMetrics } from '../src/metrics.js';
import { captureLogger } from './capture-logger.js';

/** The value of one sample line (`name{labels} value`) in a scrape, or undefined. */
const sample = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('metrics', () => {
  let redis: Redis;
  let queue: DeployQueue;
  const prefix = uniqueName('m');
  beforeAll(async () => {
    redis = connectRedis(testStack().redis!.url, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    queue = new DeployQueue({ redis, prefix });
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await queue.close();
    redis.disconnect();
  });

  it('the worker serves GET /metrics; a second one on the same address serves none and says so', async () => {
    const { logger, lines } = captureLogger();
    const metrics = new WorkerMetrics();
    metrics.jobsFinished.inc({ app: 'web', state: 'completed' });
    const server = await serveMetrics(metrics.registry, '127.0.0.1:0', logger);
    const { port } = server!.address() as { port: number };
    try {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      expect(sample(text, 'slipway_jobs_finished_total{app="web",state="completed"}')).toBe(1);
      expect(text).toContain('process_cpu_user_seconds_total');
      expect(text).toContain('nodejs_eventloop_lag_seconds');
      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).toBe(405);

      expect(await serveMetrics(new WorkerMetrics({ defaultMetrics: false }).registry, `127.0.0.1:${port}`, logger)).toBeNull();
      expect(lines.some((l) => l.level === 40 && /is taken/.test(String(l.msg)))).toBe(true);
    } finally {
      server!.close();
    }
  });

  it('registries are per process object: two never share a series, prom-client\'s global one stays empty', async () => {
    const { register } = await import('prom-client');
    const a = new ReceiverMetrics({ defaultMetrics: false });
    const b = new ReceiverMetrics({ defaultMetrics: false });
    a.webhook('github', 202, 'queued');
    a.webhook('../../etc', 404, 'not_found');
    expect(sample(await a.registry.metrics(), 'slipway_webhooks_received_total{provider="github",outcome="queued"}')).toBe(1);
    expect(sample(await a.registry.metrics(), 'slipway_webhooks_received_total{provider="unknown",outcome="rejected_4xx"}')).toBe(1);
    expect(await b.registry.metrics()).not.toContain('provider="github"');
    expect(register.getMetricsAsArray()).toEqual([]);
  });

  it('queue depth and the oldest waiting job are read when scraped', async () => {
    const app = uniqueName('app');
    const metrics = new WorkerMetrics({ queue: queue.bull, store: queue.store, apps: [app, 'absent'], defaultMetrics: false });
    const empty = await metrics.registry.metrics();
    expect(sample(empty, 'slipway_queue_oldest_waiting_seconds')).toBe(0);
    expect(sample(empty, 'slipway_queue_jobs{state="waiting"}')).toBe(0);

    await queue.enqueue({ app, sha: 'a'.repeat(40), ref: 'main', image: null, trigger: 'cli' });
    await new Promise((r) => setTimeout(r, 1100));
    await queue.enqueue({ app, sha: 'b'.repeat(40), ref: 'main', image: null, trigger: 'cli' });
    const text = await metrics.registry.metrics();
    expect(sample(text, 'slipway_queue_jobs{state="waiting"}')).toBe(2);
    expect(sample(text, 'slipway_queue_jobs{state="active"}')).toBe(0);
    expect(sample(text, 'slipway_queue_jobs{state="delayed"}')).toBe(0);
    expect(sample(text, 'slipway_queue_oldest_waiting_seconds')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'slipway_queue_oldest_waiting_seconds')).toBeLessThan(10);
  });

  it('a scrape does not hang while Redis is away: queue depth is left out, the oldest wait is NaN', async () => {
    const away = connectRedis('redis://127.0.0.1:9', 'worker');
    const stalled = new DeployQueue({ redis: away, prefix });
    const metrics = new WorkerMetrics({ queue: stalled.bull, store: stalled.store, apps: ['web'], defaultMetrics: false });
    const started = Date.now();
    const text = await metrics.registry.metrics();
    expect(Date.now() - started).toBeLessThan(3000);
    expect(sample(text, 'slipway_queue_jobs{state="waiting"}')).toBeUndefined();
    expect(sample(text, 'slipway_queue_oldest_waiting_seconds')).toBeNaN();
    await stalled.close();
    away.disconnect();
  });
});
