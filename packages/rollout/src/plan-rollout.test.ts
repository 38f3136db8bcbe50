import { describe, expect, it } from 'vitest';
import { validateConfig } from '@slipway/config/load-config';
import type { AppContainer } from './container-runtime.js';
import { RESOLVER_CACHE_MS } from '@slipway/router/dns';
import { DNS_SETTLE_MARGIN_MS, planRollout, type RolloutCurrent } from './plan-rollout.js';
import { REGISTRATION_TTL_S } from './dns/plan-registration.js';
import { UnsupportedRoutingError } from './rollout-errors.js';

const app = (over: Record<string, unknown> = {}) =>
  validateConfig({ apps: { hello: { repo: 'https://example.com/a/hello.git', replicas: 2, drain_s: 5, stop_timeout_s: 7, ...over } } }, { file: null, env: {} }).apps.hello!;
const desired = (over: Record<string, unknown> = {}) => ({ app: app(over), image: 'slipway/hello:abc', sha: 'a'.repeat(40), release: 'job-2' });

const container = (n: number, state = 'running'): AppContainer => ({
  id: `${String(n).repeat(12)}${'f'.repeat(52)}`, name: `c${n}`, image: 'slipway/hello:old', state, labels: {},
  address: state === 'running' ? `127.0.0.1:3000${n}` : null,
});
const key = (n: number) => ({ key: `/slipway/apps/hello/upstream/${String(n).repeat(12)}`, id: String(n).repeat(12), address: `127.0.0.1:3000${n}` });
const state = (over: Partial<RolloutCurrent> = {}): RolloutCurrent => ({ containers: [], upstreams: [], routed: [], ...over });
const kinds = (current: RolloutCurrent) => planRollout(current, desired()).steps.map((s) => s.kind);

describe('planRollout', () => {
  it.each([
    ['first release: nothing to drain or stop', state(), ['start', 'health', 'check-proxy', 'switch', 'apply-proxy']],
    ['routine: drain then stop the serving ones', state({ containers: [container(1), container(2)], upstreams: [key(1), key(2)], routed: ['127.0.0.1:30001', '127.0.0.1:30002'] }),
      ['start', 'health', 'check-proxy', 'switch', 'apply-proxy', 'drain', 'stop']],
    ['strays of a crashed attempt go first', state({ containers: [container(1), container(3)], upstreams: [key(1)], routed: ['127.0.0.1:30001'] }),
      ['remove-strays', 'start', 'health', 'check-proxy', 'switch', 'apply-proxy', 'drain', 'stop']],
    ['serving but exited: stopped, not drained', state({ containers: [container(1, 'exited')], upstreams: [key(1)] }),
      ['start', 'health', 'check-proxy', 'switch', 'apply-proxy', 'stop']],
  ])('%s', (_what, current, expected) => {
    expect(kinds(current)).toEqual(expected);
  });

  it('starts the configured replicas from a labelled spec and health-checks with the app\'s settings', () => {
    const plan = planRollout(state(), desired({ replicas: 3, health: { path: '/up', timeout_s: 9, interval_ms: 50 } }));
    expect(plan.steps[0]).toMatchObject({ kind: 'start', replicas: 3, port: 8080, spec: { Image: 'slipway/hello:abc', Labels: { 'slipway.app': 'hello', 'slipway.release': 'job-2' } } });
    expect(plan.steps[1]).toEqual({ kind: 'health', path: '/up', timeoutMs: 9000, intervalMs: 50 });
  });

  it('switch removes every current key, including one whose container is gone', () => {
    const plan = planRollout(state({ containers: [container(1)], upstreams: [key(1), key(2)] }), desired());
    expect(plan.steps.find((s) => s.kind === 'switch')).toEqual({ kind: 'switch', prefix: '/slipway/apps/hello/upstream', removeKeys: [key(1).key, key(2).key] });
    expect(plan.notes.join('\n')).toMatch(/upstream key .*222222222222 .*has no container/);
  });

  it('drains and stops exactly the serving containers, with the app\'s drain_s and stop_timeout_s', () => {
    const plan = planRollout(state({ containers: [container(1), container(2), container(3)], upstreams: [key(1), key(2)] }), desired());
    expect(plan.serving.map((c) => c.name)).toEqual(['c1', 'c2']);
    expect(plan.strays.map((c) => c.name)).toEqual(['c3']);
    expect(plan.steps.find((s) => s.kind === 'drain')).toEqual({ kind: 'drain', addresses: ['127.0.0.1:30001', '127.0.0.1:30002'], timeoutMs: 5000 });
    expect(plan.steps.find((s) => s.kind === 'stop')).toEqual({ kind: 'stop', ids: [container(1).id, container(2).id], timeoutS: 7 });
  });

  it('treats a container nginx still routes to (switch not applied before a crash) as serving, not a stray', () => {
    const plan = planRollout(state({ containers: [container(1), container(2)], upstreams: [key(2)], routed: ['127.0.0.1:30001'] }), desired());
    expect(plan.strays).toEqual([]);
    expect(plan.serving.map((c) => c.name)).toEqual(['c1', 'c2']);
    expect(plan.notes.join('\n')).toMatch(/nginx still routes to 111111111111/);
  });

  describe('routing: dns', () => {
    const dnsDesired = (over: Record<string, unknown> = {}) => ({ ...desired({ routing: 'dns', ...over }), addressPool: '127.0.10.0/24' });
    const dnsKinds = (current: RolloutCurrent) => planRollout(current, dnsDesired()).steps.map((s) => s.kind);
    const live = (n: number, release = 'job-1', st = 'running') => ({ ...container(n, st), labels: { 'slipway.app': 'hello', 'slipway.release': release } });

    it.each([
      ['first release: registrar checked first, keys handed over last', state(), ['check-registrar', 'start', 'health', 'check-proxy', 'switch', 'apply-proxy', 'hand-over']],
      ['routine', state({ containers: [container(1), container(2)], upstreams: [key(1), key(2)], releaseJob: 'job-1' }),
        ['check-registrar', 'start', 'health', 'check-proxy', 'switch', 'apply-proxy', 'drain', 'stop', 'hand-over']],
    ])('%s', (_what, current, expected) => {
      expect(dnsKinds(current)).toEqual(expected);
    });

    it('starts on pool addresses, switches onto a lease, and drains only after nginx\'s resolver caches expired', () => {
      const plan = planRollout(state({ containers: [container(1)], upstreams: [key(1)] }), dnsDesired());
      expect(plan.steps.find((s) => s.kind === 'start')).toMatchObject({ addressPool: '127.0.10.0/24', port: 8080 });
      expect(plan.steps.find((s) => s.kind === 'switch')).toMatchObject({ leaseTtlS: REGISTRATION_TTL_S });
      expect(plan.steps.find((s) => s.kind === 'drain')).toEqual({ kind: 'drain', addresses: ['127.0.0.1:30001'], timeoutMs: 5000, settleMs: RESOLVER_CACHE_MS + DNS_SETTLE_MARGIN_MS });
    });

    it('a running container of the live release serves even while unregistered; an exited one is a stray', () => {
      const plan = planRollout(state({ containers: [live(1), live(2), live(3, 'job-1', 'exited'), live(4, 'crashed-attempt')], upstreams: [key(1)], releaseJob: 'job-1' }), dnsDesired());
      expect(plan.serving.map((c) => c.name)).toEqual(['c1', 'c2']);
      expect(plan.strays.map((c) => c.name)).toEqual(['c3', 'c4']);
      expect(plan.notes.join('\n')).toMatch(/222222222222 .* of the live release is not in etcd/);
    });

    it('refuses without dns settings (no address pool)', () => {
      expect(() => planRollout(state(), desired({ routing: 'dns' }))).toThrow(UnsupportedRoutingError);
    });

    it('leaves routing: upstream exactly as it was', () => {
      const plan = planRollout(state({ containers: [container(1)], upstreams: [key(1)] }), desired());
      expect(plan.steps.find((s) => s.kind === 'drain')).toEqual({ kind: 'drain', addresses: ['127.0.0.1:30001'], timeoutMs: 5000 });
      expect(plan.steps.find((s) => s.kind === 'start')).not.toHaveProperty('addressPool');
    });
  });
});
