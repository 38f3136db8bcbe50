import { request as httpRequest, type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger } from '@slipway/core/logger';
import { parseConfig } from '@slipway/config/load-config';
import { uniqueName } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import type { JobRecord } from '@slipway/queue/job-types';
import type { Redis } from '@slipway/queue/redis';
import { connectReceiverRedis, createReceiver, listenReceiver } from '../src/create-receiver.js';

export interface TestReceiver {
  url: string;
  prefix: string;
  queue: DeployQueue;
  redis: Redis;
  /** Every log line written so far, parsed. */
  logs: Array<Record<string, unknown>>;
  /** The raw log text, to search for leaked secrets. */
  logText: () => string;
  jobs: () => Promise<JobRecord[]>;
  /**
   * Forgets which commits webhooks queued: the receiver treats the same
   * commit of the same app as a replay for the retention window, and tests
   * send the forges' example payloads (one commit each) over and over.
   */
  forgetPushes: () => Promise<void>;
  close: () => Promise<void>;
}

export interface StartOptions {
  redisUrl: string;
  /** `apps:` of slipway.yml. */
  apps: Record<string, Record<string, unknown>>;
  bodyLimitMb?: number;
  retentionH?: number;
  /** createReceiver's `largeBodiesBudgetBytes`. */
  largeBodiesBudgetBytes?: number;
  /** createReceiver's `smallBodiesBudgetBytes`. */
  smallBodiesBudgetBytes?: number;
  /** createReceiver's `redisBacklogLimit`. */
  redisBacklogLimit?: number;
}

/**
 * A real receiver on a free loopback port: config through the real parser,
 * a real Redis, its own queue prefix (deleted on close), logs captured.
 */
export async function startReceiver(options: StartOptions): Promise<TestReceiver> {
  const prefix = uniqueName('recv');
  const receiver: Record<string, unknown> = {};
  if (options.bodyLimitMb !== undefined) receiver.body_limit_mb = options.bodyLimitMb;
  if (options.retentionH !== undefined) receiver.delivery_retention_h = options.retentionH;
  const config = parseConfig(JSON.stringify({ redis: options.redisUrl, queue: { prefix }, receiver, apps: options.apps }), { file: null, env: {} });

  let text = '';
  const logs: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = createLogger({ name: 'slipway-receiver', level: 'debug', destination });
  const redis = connectReceiverRedis(config.redis);
  if (redis.status !== 'ready') await new Promise((resolve) => redis.once('ready', resolve));
  const queue = new DeployQueue({ redis, prefix, attempts: 1, backoffMs: 100 });
  const server = listenReceiver(createReceiver({ config, queue, logger, largeBodiesBudgetBytes: options.largeBodiesBudgetBytes, smallBodiesBudgetBytes: options.smallBodiesBudgetBytes, redisBacklogLimit: options.redisBacklogLimit }), 0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    prefix,
    queue,
    redis,
    logs,
    logText: () => text,
    jobs: () => queue.store.list({ limit: 1000 }),
    forgetPushes: async () => {
      const pushed = await redis.keys(`${prefix}:app:*:pushed:*`);
      if (pushed.length) await redis.del(...pushed);
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      if (redis.status === 'ready') {
        const keys = await redis.keys(`${prefix}:*`);
        if (keys.length) await redis.del(...keys);
      }
      await queue.close();
      redis.disconnect();
    },
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * An HTTP request with full control of the wire: repeated headers, no
 * Content-Type, chunked bodies, paths fetch would normalise.
 */
export function rawRequest(url: string, options: { method?: string; path: string; headers?: OutgoingHttpHeaders; body?: Buffer | string | Buffer[] }): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  const headers = Object.fromEntries(Object.entries(options.headers ?? {}).filter(([, v]) => v !== undefined));
  return new Promise((resolve, reject) => {
    const req = httpRequest({ hostname, port, method: options.method ?? 'POST', path: options.path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    // The server may answer and close before the whole body is sent (413, 415): that is not a failure here.
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
    });
    const body = options.body;
    if (Array.isArray(body)) {
      for (const part of body) req.write(part);
      req.end();
    } else {
      req.end(body);
    }
  });
}
