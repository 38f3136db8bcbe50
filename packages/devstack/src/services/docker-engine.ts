import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:http';
import { waitFor } from '../wait-for.js';
import { spawnService } from '../processes.js';

export const DOCKER_SOCKET = '/var/run/docker.sock';

export interface DockerEngine {
  /** Set when this stack started dockerd (and so may stop it). */
  pid?: number;
  host: string;
}

/** `GET /_ping` over the socket: true when an engine answers. */
export function dockerAnswers(socketPath = DOCKER_SOCKET): Promise<boolean> {
  if (!existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/**
 * Uses the engine at the default socket when one answers; otherwise starts
 * dockerd (its own data root, the default socket) and waits for it.
 */
export async function ensureDockerEngine(logDir: string): Promise<DockerEngine> {
  const host = `unix://${DOCKER_SOCKET}`;
  if (await dockerAnswers()) return { host };
  mkdirSync(logDir, { recursive: true });
  const pid = spawnService(['dockerd', '--host', host], join(logDir, 'dockerd.log'));
  await waitFor('the Docker engine to answer on /var/run/docker.sock', () => dockerAnswers(), { timeoutMs: 90_000, intervalMs: 200 });
  return { pid, host };
}
