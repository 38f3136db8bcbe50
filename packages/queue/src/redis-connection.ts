import { Redis, type RedisOptions } from 'ioredis';

export type { Redis };

/**
 * A Redis client for Slipway. `role` decides how it behaves while Redis is
 * away: a `producer` (receiver, CLI) fails commands at once so a webhook can
 * be answered 503 instead of hanging; a `worker` (BullMQ's blocking calls)
 * waits and reconnects forever, as BullMQ requires.
 */
export function connectRedis(url: string, role: 'producer' | 'worker', options: RedisOptions = {}): Redis {
  const common: RedisOptions = {
    lazyConnect: false,
    connectTimeout: 2000,
    // Reconnect quickly and forever: Redis coming back must heal everything without a restart.
    retryStrategy: (times) => Math.min(100 * times, 1000),
    ...options,
  };
  const redis = role === 'producer'
    ? new Redis(url, { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
    : new Redis(url, { ...common, maxRetriesPerRequest: null, enableReadyCheck: true });
  // Errors surface through the commands that fail; an unhandled 'error' event would kill the process.
  redis.on('error', () => {});
  return redis;
}

/** A Redis URL fit for a message or a log line: its password (and user) replaced by `***`. */
export function redisForDisplay(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
