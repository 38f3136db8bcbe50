import { spawn } from 'node:child_process';
import { utimesSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { POLICY_MARKER, policyOwner, startRedis } from './services.js';
import { tempDir } from './testing.js';

describe('policyOwner: whose /usr/sbin/policy-rc.d an install finds', () => {
  const { path: dir, remove } = tempDir('slipway-policy-');
  afterAll(() => remove());
  const policy = (text: string) => {
    const file = join(dir, 'policy-rc.d');
    writeFileSync(file, text);
    return file;
  };

  it('tells the host\'s own, a live install\'s (npm start and npm test together) and one a stopped install left', async () => {
    expect(policyOwner(join(dir, 'absent'))).toBe('none');
    expect(policyOwner(policy('#!/bin/sh\nexit 101\n'))).toBe('none');
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      expect(policyOwner(policy(`#!/bin/sh\n${POLICY_MARKER} (pid ${other.pid}): no service starts.\nexit 101\n`))).toBe('live');
    } finally {
      other.kill('SIGKILL');
      await new Promise((resolve) => other.once('exit', resolve));
    }
    expect(policyOwner(policy(`#!/bin/sh\n${POLICY_MARKER} (pid ${other.pid}): no service starts.\nexit 101\n`))).toBe('left');
    // One whose process lives but that is hours old: the pid is another process's now.
    const alive = policy(`#!/bin/sh\n${POLICY_MARKER} (pid 1): no service starts.\nexit 101\n`);
    expect(policyOwner(alive)).toBe('live');
    const hoursAgo = new Date(Date.now() - 3 * 60 * 60_000);
    utimesSync(alive, hoursAgo, hoursAgo);
    expect(policyOwner(alive)).toBe('left');
    // One written before the file named its process: left, as before.
    expect(policyOwner(policy(`#!/bin/sh\n${POLICY_MARKER}: no service starts.\nexit 101\n`))).toBe('left');
  });
});

describe('starting a service', () => {
  const { path: dir, remove } = tempDir('slipway-service-start-');
  afterAll(() => remove());

  it('fails at once, naming its log, when the service exits before it answers (its port taken by something else that answers)', async () => {
    // Something on the port that answers Redis's PING, slowly: redis cannot bind it, and exits meanwhile.
    const impostor = createServer((socket) => socket.on('data', () => setTimeout(() => socket.write('+PONG\r\n'), 3000)));
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    try {
      const started = Date.now();
      const err = await startRedis(join(dir, 'redis'), (impostor.address() as AddressInfo).port).then(() => null, (e: unknown) => e as Error);
      expect(err?.message).toMatch(new RegExp(`exited before it answered; see ${join(dir, 'redis', 'redis.log')}`));
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      impostor.close();
    }
  });
});
