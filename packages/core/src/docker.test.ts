import { describe, expect, it } from 'vitest';
import { dockerError, dockerStatus, imageName } from './docker.js';
import { UnavailableError } from './slipway-error.js';

const withCode = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('dockerError: the one translation of what dockerode throws', () => {
  it.each([
    ['no socket', withCode('ENOENT', 'connect ENOENT /nope.sock'), 'unavailable'],
    ['refused', withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:2375'), 'unavailable'],
    ['reset mid-request', withCode('ECONNRESET', 'socket hang up'), 'unavailable'],
    ['a hang-up without a code', new Error('socket hang up'), 'unavailable'],
    ['an engine that cannot reach its daemon', Object.assign(new Error('(HTTP code 500)'), { statusCode: 500, json: { message: 'Cannot connect to the Docker daemon. Is the docker daemon running?' } }), 'unavailable'],
    ['a swarm manager between leaders', Object.assign(new Error('(HTTP code 503)'), { statusCode: 503, json: { message: 'rpc error: code = Unknown desc = The swarm does not have a leader. It\'s possible that too few managers are online.' } }), 'unavailable'],
    ['a manager\'s write caught in an election', Object.assign(new Error('(HTTP code 500)'), { statusCode: 500, json: { message: 'rpc error: code = DeadlineExceeded desc = context deadline exceeded' } }), 'unavailable'],
    ['a manager\'s proposal dropped', Object.assign(new Error('(HTTP code 500)'), { statusCode: 500, json: { message: 'raft: proposal dropped' } }), 'unavailable'],
    ['an engine refusing: port taken', Object.assign(new Error('(HTTP code 500) server error'), { statusCode: 500, json: { message: 'port is already allocated\nmore' } }), 'docker_error'],
    ['a bad parameter', Object.assign(new Error('(HTTP code 400) bad parameter'), { statusCode: 400, json: null, reason: 'bad parameter' }), 'docker_error'],
  ])('%s → %s', (_name, err, code) => {
    const out = dockerError(err, 'testing');
    expect(out.code).toBe(code);
    expect(out.retryable).toBe(code === 'unavailable');
    expect(out instanceof UnavailableError).toBe(code === 'unavailable');
    expect(out.message).not.toContain('\n');
  });

  it('keeps the engine\'s HTTP status', () => {
    expect(dockerStatus(dockerError(Object.assign(new Error('x'), { statusCode: 404 }), 'inspecting'))).toBe(404);
  });

  it('names images slipway/<app>:<sha12> and refuses anything else', () => {
    expect(imageName('web', 'a'.repeat(40))).toBe(`slipway/web:${'a'.repeat(12)}`);
    expect(() => imageName('../etc', 'a'.repeat(40))).toThrow();
  });
});
