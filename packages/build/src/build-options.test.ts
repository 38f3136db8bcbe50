import { describe, expect, it } from 'vitest';
import { isSlipwayError } from '@slipway/core/slipway-error';
import type { AppConfig } from '@slipway/config/types';
import { buildOptions } from './build-options.js';

type BuildApp = Pick<AppConfig, 'name' | 'dockerfile' | 'build_args'>;

const sha = '0123456789abcdef0123456789abcdef01234567';

describe('buildOptions', () => {
  it.each<{ name: string; app: BuildApp; expected: unknown }>([
    {
      name: 'defaults',
      app: { name: 'hello', dockerfile: 'Dockerfile', build_args: {} },
      expected: {
        image: 'slipway/hello:0123456789ab',
        dockerfile: 'Dockerfile',
        options: { t: 'slipway/hello:0123456789ab', dockerfile: 'Dockerfile', buildargs: {}, labels: { 'slipway.app': 'hello', 'slipway.sha': sha }, rm: true, forcerm: true, version: '1' },
      },
    },
    {
      name: 'a Dockerfile in a subdirectory and build arguments',
      app: { name: 'api-2', dockerfile: './docker//web.Dockerfile', build_args: { NODE_ENV: 'production', _X1: '' } },
      expected: {
        image: 'slipway/api-2:0123456789ab',
        dockerfile: 'docker/web.Dockerfile',
        options: { t: 'slipway/api-2:0123456789ab', dockerfile: 'docker/web.Dockerfile', buildargs: { NODE_ENV: 'production', _X1: '' }, labels: { 'slipway.app': 'api-2', 'slipway.sha': sha }, rm: true, forcerm: true, version: '1' },
      },
    },
  ])('$name', ({ app, expected }) => {
    const plan = buildOptions({ app, sha });
    expect(plan).toEqual(expected);
    expect(plan.options).not.toHaveProperty('pull');
  });

  it.each<[string, BuildApp, string, string]>([
    ['an abbreviated sha', { name: 'hello', dockerfile: 'Dockerfile', build_args: {} }, '0123456', 'invalid_input'],
    ['an app name that is not one', { name: '../x', dockerfile: 'Dockerfile', build_args: {} }, sha, 'invalid_input'],
    ['a Dockerfile outside the context', { name: 'hello', dockerfile: '../Dockerfile', build_args: {} }, sha, 'invalid_input'],
    ['an absolute Dockerfile', { name: 'hello', dockerfile: '/etc/passwd', build_args: {} }, sha, 'invalid_input'],
    ['a Dockerfile that is a directory', { name: 'hello', dockerfile: 'docker/', build_args: {} }, sha, 'invalid_input'],
    ['a backslash path', { name: 'hello', dockerfile: 'docker\\Dockerfile', build_args: {} }, sha, 'invalid_input'],
    ['a build argument name with a space', { name: 'hello', dockerfile: 'Dockerfile', build_args: { 'A B': '1' } }, sha, 'invalid_input'],
    ['a build argument name starting with a digit', { name: 'hello', dockerfile: 'Dockerfile', build_args: { '1A': '1' } }, sha, 'invalid_input'],
  ])('refuses %s', (_name, app, badSha, code) => {
    let caught: unknown;
    try {
      buildOptions({ app, sha: badSha });
    } catch (err) {
      caught = err;
    }
    expect(isSlipwayError(caught, code)).toBe(true);
  });
});
