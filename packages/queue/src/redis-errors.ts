import type { Redis } from 'ioredis';
import { UnavailableError } from '@slipway/core/slipway-error';

const CONNECTION_ERROR = /Connection is closed|enableOfflineQueue|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|MaxRetriesPerRequest|connect ETIMEDOUT|Stream isn't writeable|Reached the max retries/i;

/**
 * Runs `operation`, turning "Redis is not there" (in whatever words ioredis
 * uses) into one UnavailableError, so callers answer 503 or retry instead of
 * parsing messages. Fails at once when the connection is known to be down
 * rather than waiting on it.
 */
export async function withRedis<T>(redis: Redis, operation: () => Promise<T>, timeoutMs = 3000): Promise<T> {
  if (redis.status !== 'ready') throw new UnavailableError('redis', `Redis is unreachable (${redis.status})`);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      operation(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new UnavailableError('redis', `Redis did not answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    if (err instanceof UnavailableError) throw err;
    if (redis.status !== 'ready' || CONNECTION_ERROR.test((err as Error).message ?? '')) {
      throw new UnavailableError('redis', `Redis is unreachable: ${(err as Error).message}`, { cause: err });
    }
    throw err;
  } finally {
    if (timer) clearTimeout(timer);
  }
}
