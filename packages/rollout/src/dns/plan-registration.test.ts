import { describe, expect, it } from 'vitest';
import type { AppContainer } from '../container-runtime.js';
import { planRegistration, type RegisteredKey, type RegistrationState } from './plan-registration.js';

const P = '/slipway/apps/hello/upstream';
const id = (n: number) => String(n).repeat(12);
const c = (n: number, release: string, state = 'running', port = 8080): AppContainer => ({
  id: `${id(n)}${'f'.repeat(52)}`, name: `c${n}`, image: 'i', state, labels: { 'slipway.app': 'hello', 'slipway.release': release },
  address: state === 'running' ? `127.0.10.${n}:${port}` : null,
});
const k = (n: number, lease: string, address = `127.0.10.${n}:8080`): RegisteredKey => ({ key: `${P}/${id(n)}`, id: id(n), address, lease });
const state = (over: Partial<RegistrationState>): RegistrationState => ({ prefix: P, port: 8080, releaseJob: 'j2', containers: [], keys: [], own: new Map(), ...over });
const w = (n: number) => ({ id: id(n), key: `${P}/${id(n)}`, address: `127.0.10.${n}:8080` });

describe('planRegistration', () => {
  it.each<[string, Partial<RegistrationState>, { probe?: number[]; adopt?: number[]; remove?: number[]; drop?: number[] }]>([
    ['a running container of the live release with no key is probed', { containers: [c(1, 'j2')] }, { probe: [1] }],
    ['one registered on our lease: nothing to do', { containers: [c(1, 'j2')], keys: [k(1, '7')], own: new Map([[id(1), '7']]) }, {}],
    ['switched by a rollout (its lease): adopted, not probed', { containers: [c(1, 'j2')], keys: [k(1, '99')] }, { adopt: [1] }],
    ['before the switch: new containers are not registered, the live ones stay', { releaseJob: 'j1', containers: [c(1, 'j1'), c(2, 'j2')], keys: [k(1, '7')], own: new Map([[id(1), '7']]) }, {}],
    ['after the switch: the old release\'s keys go and are never put back', { containers: [c(1, 'j1'), c(2, 'j2')], keys: [k(1, '7'), k(2, '99')], own: new Map([[id(1), '7']]) }, { adopt: [2], remove: [1], drop: [1] }],
    ['a dead container: key removed, lease dropped', { containers: [c(1, 'j2', 'exited')], keys: [k(1, '7')], own: new Map([[id(1), '7']]) }, { remove: [1], drop: [1] }],
    ['a vanished container\'s key goes', { keys: [k(3, '0')] }, { remove: [3] }],
    ['a key with a stale address is replaced', { containers: [c(1, 'j2')], keys: [k(1, '7', '127.0.10.9:8080')], own: new Map([[id(1), '7']]) }, { remove: [1], probe: [1] }],
    ['no release yet: nothing is registered', { releaseJob: null, containers: [c(1, 'j2')] }, {}],
    ['a container not at the app\'s port (published the upstream way) is not answerable', { containers: [c(1, 'j2', 'running', 32768)] }, {}],
  ])('%s', (_what, over, expected) => {
    const plan = planRegistration(state(over));
    expect({
      probe: plan.probe, adopt: plan.adopt, remove: plan.remove.map((r) => r.key), drop: plan.drop,
    }).toEqual({
      probe: (expected.probe ?? []).map(w), adopt: (expected.adopt ?? []).map(w), remove: (expected.remove ?? []).map((n) => `${P}/${id(n)}`), drop: (expected.drop ?? []).map(id),
    });
  });

  it('says why a key goes', () => {
    const plan = planRegistration(state({ containers: [c(1, 'j1')], keys: [k(1, '7'), k(3, '0')] }));
    expect(plan.remove.map((r) => r.why)).toEqual(['its container belongs to release j1, not the live j2', 'its container does not exist']);
  });
});
