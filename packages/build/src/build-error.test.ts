import { describe, expect, it } from 'vitest';
import { UnavailableError } from '@slipway/core/slipway-error';
import { BuildError, dockerFailure } from './build-error.js';

const withCode = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('dockerFailure', () => {
  it.each([
    ['no socket', withCode('ENOENT', 'connect ENOENT /nope.sock'), UnavailableError],
    ['refused', withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:2375'), UnavailableError],
    ['reset mid-request', withCode('ECONNRESET', 'socket hang up'), UnavailableError],
    ['Docker refusing the request', Object.assign(new Error('(HTTP code 500) server error'), { statusCode: 500, json: { message: 'Cannot locate specified Dockerfile: x\nmore' } }), BuildError],
    ['a bad parameter', Object.assign(new Error('(HTTP code 400) bad parameter'), { statusCode: 400, json: null, reason: 'bad parameter' }), BuildError],
    ['a full disk while Docker stores the context', Object.assign(new Error('(HTTP code 500) server error'), { statusCode: 500, json: { message: 'write /var/lib/docker/tmp/docker-builder1/x: no space left on device' } }), UnavailableError],
  ])('%s', (_name, err, type) => {
    const out = dockerFailure(err);
    expect(out).toBeInstanceOf(type);
    expect(out.message).not.toContain('\n');
  });

  it('leaves programming errors alone', () => {
    const bug = new TypeError('x is not a function');
    expect(dockerFailure(bug)).toBe(bug);
  });
});
