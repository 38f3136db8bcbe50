import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { followProgress } from './registry-push.js';

// Only the modem's stream parsing is used: no engine is asked anything.
const docker = new Docker({ socketPath: '/nonexistent.sock' });

describe('followProgress', () => {
  it('gives a load or push that stops making progress up as unavailable, and lets go of its stream', async () => {
    const stream = new PassThrough();
    const started = Date.now();
    const err = await followProgress(docker, stream, () => {}, 'pushing r:5000/slipway/web:abc', { idleMs: 200 }).then(() => null, (e: unknown) => e as { code: string; message: string });
    expect(err).toMatchObject({ code: 'unavailable', message: 'no progress for 0.2 s while pushing r:5000/slipway/web:abc' });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(stream.destroyed).toBe(true);
  });

  it('waits as long as progress comes, from its events or from the bytes going in', async () => {
    const stream = new PassThrough();
    const input = new PassThrough();
    const events: unknown[] = [];
    const done = followProgress(docker, stream, (e) => events.push(e), 'loading an image', { idleMs: 300, activity: input });
    input.resume();
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 150));
      input.write(Buffer.alloc(1024));
    }
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 150));
      stream.write(`${JSON.stringify({ status: 'Pushing', id: `layer-${i}` })}\n`);
    }
    stream.end();
    await expect(done).resolves.toBeUndefined();
    expect(events).toHaveLength(3);
  });
});
