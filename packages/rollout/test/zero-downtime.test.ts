import { connect } from 'node:net';
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { ownNginx } from '@slipway/devstack/testing';
import { rollout } from '../src/rollout.js';
import { buildImage, docker, fetchText, testApp, useRolloutWorld } from './fixtures.js';
import { startLoad, wrongVersions, type Sample } from './load.js';

const ROLLOUTS = 10;
const KEEP_ALIVE_LOOPS = 4;
const CLOSE_LOOPS = 4;
/**
 * The documented bound for keep-alive clients (see README "Keep-alive
 * clients and reloads"): nginx 1.22 closes an old worker's idle keep-alive
 * connections when a reload retires it, and a request a client sends on
 * one at that instant is reset. Each connection can lose at most that one
 * request per reload, and a rollout reloads exactly once, so a rollout
 * costs at most one failed request per keep-alive connection, on a reused
 * connection, within its switch.
 */
const MAX_KEEP_ALIVE_FAILURES_PER_RELOAD = KEEP_ALIVE_LOOPS;
/**
 * How long after the switch a client may still send on a connection the
 * reload closed. nginx closes an old worker's idle connections within 3 ms
 * of it releasing the listening socket (measured with nginx 1.22.1), but
 * the load runs in this process, beside the rollout, on two cores shared
 * with Docker and nginx: under the whole suite it was seen sending 88-180
 * ms after the switch on a connection closed by it.
 */
const CLIENT_LAG_MS = 250;

describe('invariant 1: no failed request during rollouts', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd } = w));

  it(`${ROLLOUTS} consecutive rollouts of 2 replicas under keep-alive and connection-close load`, async () => {
    const app = await testApp({ replicas: 2, drain_s: 5, stop_timeout_s: 5 });
    const versions = Array.from({ length: ROLLOUTS + 1 }, (_, i) => `v${i + 1}`);
    const images: string[] = [];
    for (const v of versions) images.push(await buildImage(app.name, v));
    const base = { app, nginx: nginx.settings, docker, etcd, sha: null };
    await rollout({ ...base, image: images[0]!, job: 'r0' });
    expect(await fetchText(app.listen)).toBe('200 v1');

    const load = startLoad({ listen: app.listen, keepAlive: KEEP_ALIVE_LOOPS, close: CLOSE_LOOPS, paths: ['/', '/cgi-bin/slow'] });
    await new Promise((r) => setTimeout(r, 1500));
    // Rollout k replaces v(k) with v(k+1); the switch window is from its check to the start of its drain.
    const windows: Array<{ start: number; end: number; switchStart: number; switchEnd: number }> = [];
    for (let k = 1; k <= ROLLOUTS; k++) {
      const w = { start: Date.now(), end: 0, switchStart: 0, switchEnd: 0 };
      const result = await rollout({
        ...base, image: images[k]!, job: `r${k}`,
        onStep: (s) => {
          if (s === 'switch') w.switchStart = Date.now();
          if (s === 'drain') w.switchEnd = Date.now();
        },
      });
      w.end = Date.now();
      windows.push(w);
      expect(result.drain?.drained, `rollout ${k} drained by observation: ${JSON.stringify(result.drain)}`).toBe(true);
    }
    await new Promise((r) => setTimeout(r, 1500));
    const samples = await load.stop();

    const wrongVersion = wrongVersions(samples, windows);
    const non2xx = samples.filter((s) => s.status !== undefined && (s.status < 200 || s.status > 299));
    const closeErrors = samples.filter((s) => s.kind === 'close' && s.error);
    const keepAliveErrors = samples.filter((s) => s.kind === 'keep-alive' && s.error);
    const during = (s: Sample, w: (typeof windows)[number]) => s.end >= w.switchStart - 50 && s.start <= w.switchEnd + CLIENT_LAG_MS;
    const inSwitch = (s: Sample) => windows.some((w) => during(s, w));
    const perRollout = windows.map((w) => keepAliveErrors.filter((s) => during(s, w)).length);

    const byKind = (kind: Sample['kind']) => samples.filter((s) => s.kind === kind).length;
    console.log([
      `zero-downtime: ${samples.length} requests (${byKind('keep-alive')} keep-alive, ${byKind('close')} connection-close) over ${ROLLOUTS} rollouts`,
      `  non-2xx: ${non2xx.length}; connection-close errors: ${closeErrors.length}; wrong version: ${wrongVersion.length}`,
      `  keep-alive requests reset by the reload: ${keepAliveErrors.length} in ${ROLLOUTS} reloads = ${(keepAliveErrors.length / ROLLOUTS).toFixed(2)} per reload `
        + `(${KEEP_ALIVE_LOOPS} keep-alive connections; per rollout: ${perRollout.join(' ')}; bound ${MAX_KEEP_ALIVE_FAILURES_PER_RELOAD}/reload)`,
      `  keep-alive errors: ${[...new Set(keepAliveErrors.map((s) => `${s.error}${s.reused ? ' on a reused connection' : ''}`))].join(', ') || 'none'}; `
        + `by path: ${['/', '/cgi-bin/slow'].map((p) => `${p} ${keepAliveErrors.filter((s) => s.path === p).length}`).join(', ')}`,
      `  switch windows (ms): ${windows.map((w) => w.switchEnd - w.switchStart).join(' ')}; rollouts (ms): ${windows.map((w) => w.end - w.start).join(' ')}`,
    ].join('\n'));

    expect(non2xx.map((s) => `${s.status} ${s.path}`)).toEqual([]);
    expect(closeErrors.map((s) => `${s.error} ${s.path}`)).toEqual([]);
    expect(wrongVersion.map((s) => s.body)).toEqual([]);
    // Keep-alive failures: only the documented reload race, within its bound.
    for (const s of keepAliveErrors) {
      expect(s.reused, 'a keep-alive failure on a fresh connection is not the reload race').toBe(true);
      expect(['ECONNRESET', 'EPIPE'], `unexpected keep-alive error ${s.error}`).toContain(s.error);
      expect(inSwitch(s), `keep-alive failure outside any switch window: ${describeOutside(s, windows)}`).toBe(true);
    }
    for (const n of perRollout) expect(n).toBeLessThanOrEqual(MAX_KEEP_ALIVE_FAILURES_PER_RELOAD);
    expect(samples.filter((s) => s.path === '/cgi-bin/slow' && s.status === 200).length).toBeGreaterThan(ROLLOUTS);
    expect(await fetchText(app.listen)).toBe(`200 v${ROLLOUTS + 1}`);
  });

  it('a request still arriving at the reload is answered by the old version: the drain waits for what nginx\'s retiring workers hold', async () => {
    const app = await testApp({ replicas: 1, drain_s: 10, stop_timeout_s: 2 });
    const [v1, v2] = [await buildImage(app.name, 'v1'), await buildImage(app.name, 'v2')];
    const base = { app, nginx: nginx.settings, docker, etcd, sha: null };
    await rollout({ ...base, image: v1, job: 'r1' });
    expect(await fetchText(app.listen)).toBe('200 v1');

    // A POST whose body is half sent when the switch comes: nginx reads the whole body before it connects upstream,
    // so no connection to the old container shows until then; the rest of the body comes a second into the drain.
    const [host, port] = app.listen.split(':');
    const client = connect(Number(port), host);
    let answer = '';
    client.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    client.on('error', (err) => (answer += `error ${err.message}`));
    const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
    await new Promise<void>((resolve) => client.on('connect', () => resolve()));
    client.write(`POST /cgi-bin/slow HTTP/1.1\r\nHost: app\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nConnection: close\r\n\r\n${'a'.repeat(50)}`);
    await new Promise((r) => setTimeout(r, 300));
    let rest: NodeJS.Timeout | undefined;
    const result = await rollout({
      ...base, image: v2, job: 'r2',
      onStep: (s) => {
        if (s === 'drain') rest = setTimeout(() => client.write('b'.repeat(50)), 1000);
      },
    });
    clearTimeout(rest);
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
    client.destroy();
    expect(answer.split('\r\n')[0], answer).toBe('HTTP/1.1 200 OK');
    expect(answer, 'the old version answers (its body, chunked)').toMatch(/\r\nv1\n/);
    expect(result.drain).toMatchObject({ drained: true });
    expect(result.drain!.ms).toBeGreaterThan(900);
    expect(await fetchText(app.listen)).toBe('200 v2');
  });
});

/** Where a sample falls relative to the switch windows: what a failure outside them needs to be understood. */
function describeOutside(s: Sample, windows: ReadonlyArray<{ switchStart: number; switchEnd: number }>): string {
  const nearest = windows.map((w, k) => ({ k: k + 1, gap: s.start > w.switchEnd ? s.start - w.switchEnd : s.end - w.switchStart }))
    .sort((x, y) => Math.abs(x.gap) - Math.abs(y.gap))[0];
  const where = nearest ? `${Math.abs(nearest.gap)} ms ${nearest.gap > 0 ? 'after' : 'before'} the switch of rollout ${nearest.k}` : 'no switch at all';
  return `${s.path} ${s.error} sent at +${s.start - (windows[0]?.switchStart ?? s.start)} ms, took ${s.end - s.start} ms, ${where}`;
}
