import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ownFrontTier, type ownNginx } from '@slipway/devstack/testing';
import type { NginxTarget } from '@slipway/router/nginx';
import { rollout } from '../src/rollout.js';
import { appStatus } from '../src/status.js';
import { buildImage, docker, fetchText, testApp, useRolloutWorld } from './fixtures.js';
import { startLoad } from './load.js';

const ROLLOUTS = 5;

/*
 * Invariant 1 with two tiers (nginx.front): the same load as the
 * zero-downtime test, but where one tier allows a keep-alive request reset
 * per connection and reload, two allow none at all. The back nginx (the
 * world's) is reloaded by every rollout; the front, which the clients are
 * connected to, is written once and never reloaded.
 */
describe('invariant 1 with two tiers: not even a keep-alive reset', () => {
  let back: Awaited<ReturnType<typeof ownNginx>>;
  let front: Awaited<ReturnType<typeof ownFrontTier>>;
  let etcd: Etcd3;
  let nginx: NginxTarget;
  useRolloutWorld((w) => ({ nginx: back, etcd } = w));
  beforeAll(async () => {
    front = await ownFrontTier(back.settings);
    nginx = front.settings;
  });
  afterAll(async () => {
    await front?.stop();
  });

  it(`${ROLLOUTS} rollouts of 2 replicas under keep-alive and connection-close load lose no request`, async () => {
    const app = await testApp({ replicas: 2, drain_s: 5, stop_timeout_s: 5 });
    const images: string[] = [];
    for (let v = 1; v <= ROLLOUTS + 1; v++) images.push(await buildImage(app.name, `v${v}`));
    const base = { app, nginx, docker, etcd, sha: null };
    await rollout({ ...base, image: images[0]!, job: 'r0' });
    expect(await fetchText(app.listen)).toBe('200 v1');

    const load = startLoad({ listen: app.listen, keepAlive: 4, close: 4, paths: ['/', '/cgi-bin/slow'] });
    await new Promise((r) => setTimeout(r, 1000));
    for (let k = 1; k <= ROLLOUTS; k++) {
      const result = await rollout({ ...base, image: images[k]!, job: `r${k}` });
      expect(result.drain?.drained, `rollout ${k} drained by observation: ${JSON.stringify(result.drain)}`).toBe(true);
    }
    await new Promise((r) => setTimeout(r, 1000));
    const samples = await load.stop();

    const failed = samples.filter((s) => s.error !== undefined || s.status === undefined || s.status < 200 || s.status > 299);
    const reused = samples.filter((s) => s.kind === 'keep-alive' && s.reused).length;
    console.log(`two tiers: ${samples.length} requests (${reused} on reused keep-alive connections) over ${ROLLOUTS} rollouts, ${failed.length} failed`);
    expect(failed.map((s) => `${s.kind} ${s.path} ${s.error ?? s.status}`)).toEqual([]);
    expect(reused).toBeGreaterThan(ROLLOUTS * 10);
    expect(await fetchText(app.listen)).toBe(`200 v${ROLLOUTS + 1}`);

    // Both tiers' files are what the configuration and etcd render to.
    const status = await appStatus({ app, nginx, docker, etcd });
    expect(status.drift).toEqual([]);
    expect(status.nginx.inSync).toBe(true);
  });
});
