import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../wait-for.js';
import { spawnService } from '../processes.js';
import { tcpExchange } from './probes.js';

export interface RedisService { pid: number; port: number; url: string }

export async function redisAnswers(port: number): Promise<boolean> {
  return (await tcpExchange('127.0.0.1', port, 'PING\r\n').catch(() => '')).startsWith('+PONG');
}

/** redis-server on loopback, persisted to an append-only file, data and log under `dir`. */
export async function startRedis(dir: string, port: number): Promise<RedisService> {
  mkdirSync(dir, { recursive: true });
  const pid = spawnService([
    'redis-server', '--bind', '127.0.0.1', '--port', String(port), '--dir', dir,
    // An append-only file, as a production Redis should have: a restarted Redis keeps its queue.
    '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--protected-mode', 'yes', '--daemonize', 'no',
    '--loglevel', 'warning',
  ], join(dir, 'redis.log'));
  await waitFor(`redis on port ${port}`, () => redisAnswers(port), { timeoutMs: 15_000 });
  return { pid, port, url: `redis://127.0.0.1:${port}` };
}
