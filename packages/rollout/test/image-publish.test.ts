import { createServer, type IncomingMessage, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, testAppName } from '@slipway/devstack/testing';
import { pinInRegistry, publishImage } from '../src/swarm/registry-push.js';
import { buildImage, docker } from './fixtures.js';

/**
 * A swarm manager that takes an image load and then stops: it answers that
 * it has no such image, accepts `POST /images/load`, reads `readBytes` of
 * the upload (then nothing more: the worker's writes back up) and never
 * answers. Each load it saw, and whether its sender let go (seen once
 * `readOn()` has it read again: a socket not read from sees no close).
 */
async function stalledManager(readBytes: number): Promise<{ manager: Docker; loads: Array<{ read: number; closed: boolean }>; readOn: () => void; close: () => Promise<void> }> {
  const dir = tempDir('slipway-stalled-manager-');
  const socketPath = join(dir.path, 'docker.sock');
  const loads: Array<{ read: number; closed: boolean }> = [];
  const paused: IncomingMessage[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    if (req.method === 'GET' && /\/images\/[^/]+\/json$/.test(req.url ?? '')) {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"message":"no such image"}');
      return;
    }
    if (req.method === 'POST' && /\/images\/load/.test(req.url ?? '')) {
      const load = { read: 0, closed: false };
      loads.push(load);
      req.on('data', (chunk: Buffer) => {
        load.read += chunk.length;
        if (load.read >= readBytes && !paused.includes(req)) {
          paused.push(req);
          req.pause();
        }
      });
      req.socket.on('close', () => (load.closed = true));
      return;
    }
    res.writeHead(500).end('{"message":"not expected here"}');
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    manager: new Docker({ socketPath }),
    loads,
    readOn: () => {
      for (const req of paused) req.resume();
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      dir.remove();
    },
  };
}

/**
 * A swarm manager whose engine reads an image load whole and answers it
 * with `event`, the one line of its progress stream; a look-up in the
 * registry it answers 401 (credentials refused).
 */
async function answeringManager(event: Record<string, unknown> = {}): Promise<{ manager: Docker; close: () => Promise<void> }> {
  const dir = tempDir('slipway-answering-manager-');
  const socketPath = join(dir.path, 'docker.sock');
  const server: Server = createServer((req: IncomingMessage, res) => {
    if (req.method === 'GET' && /\/images\/[^/]+\/json$/.test(req.url ?? '')) {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"message":"no such image"}');
      return;
    }
    if (req.method === 'POST' && /\/images\/load/.test(req.url ?? '')) {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'Content-Type': 'application/json' }).end(`${JSON.stringify(event)}\n`));
      return;
    }
    if (req.method === 'GET' && /\/distribution\//.test(req.url ?? '')) {
      res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"message":"unauthorized: authentication required"}');
      return;
    }
    res.writeHead(500).end('{"message":"not expected here"}');
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    manager: new Docker({ socketPath }),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      dir.remove();
    },
  };
}

describe('publishing an image to a swarm manager that stops taking it', () => {
  const app = testAppName();
  let image: string;
  beforeAll(async () => {
    image = await buildImage(app, 'v1');
  });
  afterAll(async () => {
    await docker.getImage(image).remove({ force: true }).catch(() => {});
  });

  it('refuses an image that sets a label Slipway reserves (deploy --image of one it did not build), before moving any of it', async () => {
    const labelled = `slipway/${app}:labelled`;
    const dir = tempDir('slipway-labelled-');
    try {
      writeFileSync(join(dir.path, 'Dockerfile'), `FROM ${image}\nLABEL slipway.release=other\n`);
      const stream = await docker.buildImage({ context: dir.path, src: ['Dockerfile'] }, { t: labelled });
      await new Promise((resolve, reject) => docker.modem.followProgress(stream, (e) => (e ? reject(e) : resolve(null))));
    } finally {
      dir.remove();
    }
    const stalled = await stalledManager(64 * 1024);
    try {
      const err = await publishImage({ source: docker, manager: stalled.manager, registry: '127.0.0.1:5999', app, image: labelled, sha: null, log: () => {} })
        .then(() => null, (e: unknown) => e as { code: string; message: string });
      expect(err).toMatchObject({ code: 'container_start_failed', message: expect.stringContaining(`${labelled} sets the label slipway.release`) });
      expect(stalled.loads).toHaveLength(0);
    } finally {
      await stalled.close();
      await docker.getImage(labelled).remove({ force: true }).catch(() => {});
    }
  });

  it('is given up as unavailable once the upload makes no progress for idleMs, letting go of the upload', async () => {
    const stalled = await stalledManager(64 * 1024);
    try {
      const started = Date.now();
      const err = await publishImage({ source: docker, manager: stalled.manager, registry: '127.0.0.1:5999', app, image, sha: null, log: () => {}, idleMs: 500 })
        .then(() => null, (e: unknown) => e as { code: string; message: string });
      expect(err).toMatchObject({ code: 'unavailable', message: expect.stringContaining(`no progress for 0.5 s while loading ${image} into the swarm manager`) });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(stalled.loads).toHaveLength(1);
      stalled.readOn();
      await expect.poll(() => stalled.loads[0]!.closed, { timeout: 2000 }).toBe(true);
    } finally {
      await stalled.close();
    }
  });

  // The host's or the registry's failure is retried (unavailable, Slipway's); any other is not.
  it.each([
    ['write /var/lib/docker/tmp/docker-import-1/layer.tar: no space left on device', 'unavailable'],
    ['open /var/lib/docker/tmp/x/json: invalid argument', 'docker_error'],
  ])('fails a load the manager\'s engine answers "%s" as %s', async (message, code) => {
    const answering = await answeringManager({ errorDetail: { message }, error: message });
    try {
      const err = await publishImage({ source: docker, manager: answering.manager, registry: '127.0.0.1:5999', app, image, sha: null, log: () => {} })
        .then(() => null, (e: unknown) => e as { code: string; message: string });
      expect(err).toMatchObject({ code, message: expect.stringContaining(message) });
    } finally {
      await answering.close();
    }
  });

  it('says that a registry refused to show an image (401) may have refused the credentials, not only that it has no such image', async () => {
    const answering = await answeringManager();
    try {
      const registry = '127.0.0.1:5999';
      await expect(pinInRegistry(answering.manager, `${registry}/slipway/${app}:abc`, registry, { username: 'u', password: 'p' })).rejects
        .toMatchObject({ code: 'image_not_found', message: expect.stringMatching(/refused to show .*: it has no such image, or it refused the credentials of engine\.registry_auth/) });
      await expect(pinInRegistry(answering.manager, `${registry}/slipway/${app}:abc`, registry, undefined)).rejects
        .toMatchObject({ message: expect.stringMatching(/refused to answer without credentials/) });
    } finally {
      await answering.close();
    }
  });

  it('stops where it is when the rollout is cancelled (cancelled, the upload let go of)', async () => {
    const stalled = await stalledManager(64 * 1024);
    const cancel = new AbortController();
    try {
      const publishing = publishImage({ source: docker, manager: stalled.manager, registry: '127.0.0.1:5999', app, image, sha: null, log: () => {}, signal: cancel.signal });
      await expect.poll(() => stalled.loads.length, { timeout: 5000 }).toBe(1);
      const aborted = Date.now();
      cancel.abort();
      const err = await publishing.then(() => null, (e: unknown) => e as { code: string });
      expect(err).toMatchObject({ code: 'cancelled' });
      expect(Date.now() - aborted).toBeLessThan(1000);
      stalled.readOn();
      await expect.poll(() => stalled.loads[0]!.closed, { timeout: 2000 }).toBe(true);
    } finally {
      await stalled.close();
    }
  });
});
