import { connectRedis, type Redis } from '@slipway/queue/redis-connection';

/**
 * The receiver's Redis connection: a producer (commands fail at once while
 * Redis is away, so webhooks get a quick 503), with auto-pipelining: the
 * commands of concurrent webhooks issued in one tick go out in one write,
 * which under load saves a system call per command.
 */
export function connectReceiverRedis(url: string): Redis {
  return connectRedis(url, 'producer', { enableAutoPipelining: true });
}
