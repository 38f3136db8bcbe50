import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { waitAllHealthy, type WaitHealthyOptions } from '../src/health.js';
import { CancelledError, HealthCheckError } from '../src/rollout-errors.js';

/*
 * The probe against a real HTTP server that sends its status line at once
 * and then a byte every 200 ms for ever: never idle, never finished.
 */
describe('health probe of an app that streams its answer', () => {
  let server: Server | null = null;
  const streams = new Set<ServerResponse>();
  afterEach(async () => {
    for (const res of streams) res.destroy();
    streams.clear();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = null;
  });

  /** A server answering `status` and then trickling; its address. */
  async function trickling(status: number): Promise<string> {
    server = createServer((_req, res) => {
      streams.add(res);
      res.writeHead(status, { 'content-type': 'text/plain' }).flushHeaders();
      const tick = setInterval(() => res.write('.'), 200);
      res.on('close', () => clearInterval(tick));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return `127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  const options = (extra: Partial<WaitHealthyOptions> = {}): WaitHealthyOptions => ({
    // The container itself is this test's server: it keeps running.
    runtime: { healthState: async () => ({ running: true, restarted: false, exitCode: null }), logTail: async () => '' },
    path: '/health',
    timeoutMs: 1_000,
    intervalMs: 100,
    log: () => {},
    ...extra,
  });

  it('a 200 whose body never ends counts as healthy once its status arrives', async () => {
    const address = await trickling(200);
    const started = Date.now();
    await waitAllHealthy([{ id: 'c'.repeat(64), address }], options({ timeoutMs: 5_000 }));
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(streams.size).toBe(1);
  });

  it('a 503 whose body never ends fails at the deadline, not never', async () => {
    const address = await trickling(503);
    const started = Date.now();
    const err = await waitAllHealthy([{ id: 'c'.repeat(64), address }], options()).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(HealthCheckError);
    expect((err as Error).message, (err as Error).message).toContain('HTTP 503');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a cancel stops a probe in flight', async () => {
    // Accepts and never answers: only the cancel (or the 60 s deadline) ends the wait.
    server = createServer((_req, res) => streams.add(res));
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const cancel = new AbortController();
    setTimeout(() => cancel.abort(), 500);
    const started = Date.now();
    const err = await waitAllHealthy([{ id: 'c'.repeat(64), address }], options({ timeoutMs: 60_000, signal: cancel.signal })).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(CancelledError);
    expect(Date.now() - started).toBeLessThan(1_500);
  });
});
