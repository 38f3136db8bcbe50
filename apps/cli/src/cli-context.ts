import { parseArgs, type ParseArgsConfig } from 'node:util';
import Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import { dockerConnection } from '@slipway/core/docker';
import { SlipwayError } from '@slipway/core/slipway-error';
import { appConfig, loadConfig } from '@slipway/config/load-config';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectRedis, type Redis, redisReady } from '@slipway/queue/redis';
import { createEtcdClient } from '@slipway/etcd/client';
import type { Terminal } from './terminal.js';

/** How long the CLI waits for Redis before saying it cannot be reached. */
export const CONNECT_TIMEOUT_MS = 3000;

/**
 * What a command may need, created on first use and closed at the end: a
 * command that never touches etcd never connects to it.
 */
export class CliContext {
  private loaded: SlipwayConfig | undefined;
  private redis: Redis | undefined;
  private deployQueue: DeployQueue | undefined;
  private etcdClient: Etcd3 | undefined;
  private dockerClient: Docker | undefined;

  constructor(
    readonly options: { configPath?: string; env: NodeJS.ProcessEnv; json: boolean },
    readonly terminal: Terminal,
  ) {}

  get config(): SlipwayConfig {
    this.loaded ??= loadConfig({ path: this.options.configPath, env: this.options.env });
    return this.loaded;
  }

  app(name: string): AppConfig {
    return appConfig(this.config, name);
  }

  async queue(): Promise<DeployQueue> {
    if (this.deployQueue) return this.deployQueue;
    const redis = connectRedis(this.config.redis, 'producer', { retryStrategy: () => null });
    this.redis = redis;
    await redisReady(redis, this.config.redis, CONNECT_TIMEOUT_MS);
    // From here on a lost connection should heal, not end the command.
    redis.options.retryStrategy = (times) => Math.min(100 * times, 1000);
    this.deployQueue = new DeployQueue({ redis, prefix: this.config.queue.prefix, attempts: this.config.worker.attempts, backoffMs: this.config.worker.backoff_ms });
    return this.deployQueue;
  }

  get etcd(): Etcd3 {
    this.etcdClient ??= createEtcdClient(this.config.etcd);
    return this.etcdClient;
  }

  get docker(): Docker {
    this.dockerClient ??= new Docker(dockerConnection(this.config.docker));
    return this.dockerClient;
  }

  async close(): Promise<void> {
    await this.deployQueue?.close();
    this.redis?.disconnect();
    this.etcdClient?.close();
  }
}

/** Bad command line: exit 2 with the command's usage. */
export class UsageError extends SlipwayError {
  constructor(message: string, readonly usage: string) {
    super('usage', message, { fault: 'request' });
    this.name = 'UsageError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** util.parseArgs, strict, with every complaint turned into a UsageError carrying `usage`. */
export function parseFlags<O extends Options>(argv: string[], options: O, usage: string, positionals: { min: number; max: number }) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!, usage);
  }
  if (parsed.positionals.length < positionals.min) throw new UsageError('missing argument', usage);
  if (parsed.positionals.length > positionals.max) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[positionals.max])}`, usage);
  return { values: parsed.values as { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string } & { json?: boolean }, positionals: parsed.positionals };
}

export function positiveInt(value: string | undefined, flag: string, usage: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`, usage);
  if (Number(value) > max) throw new UsageError(`${flag} must be at most ${max}, got ${value.length > 20 ? `${value.slice(0, 20)}...` : value}`, usage);
  return Number(value);
}
