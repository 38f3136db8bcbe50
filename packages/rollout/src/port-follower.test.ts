import { describe, expect, it } from 'vitest';
import type { AppContainer } from './container-runtime.js';
import { planPortFollow } from './port-follower.js';

const key = (id: string, address: string) => ({ key: `/p/${id}`, id, address });
const container = (id: string, address: string | null, state = 'running'): AppContainer => ({ id: `${id}${'f'.repeat(52)}`, name: id, image: 'img', state, labels: {}, address });

describe('planPortFollow', () => {
  it('puts a key whose container runs on another address, and only that key', () => {
    expect(planPortFollow([key('aaaaaaaaaaaa', '127.0.0.1:32801'), key('bbbbbbbbbbbb', '127.0.0.1:32802')],
      [container('aaaaaaaaaaaa', '127.0.0.1:32855'), container('bbbbbbbbbbbb', '127.0.0.1:32802')]))
      .toEqual({ put: { '/p/aaaaaaaaaaaa': '127.0.0.1:32855' }, remove: [] });
  });

  it.each([
    ['every key on its container\'s address', [container('aaaaaaaaaaaa', '127.0.0.1:32801')]],
    ['its container gone', []],
    ['its container restarting, without a port yet', [container('aaaaaaaaaaaa', null, 'restarting')]],
    ['its container stopped', [container('aaaaaaaaaaaa', '127.0.0.1:32855', 'exited')]],
    ['a running container without a key (the rollout says which serve)', [container('cccccccccccc', '127.0.0.1:32855')]],
  ])('changes nothing with %s', (_what, containers) => {
    expect(planPortFollow([key('aaaaaaaaaaaa', '127.0.0.1:32801')], containers)).toBeNull();
  });
});
