import { describe, expect, it } from 'vitest';
import { isSlipwayError } from '@slipway/core/slipway-error';
import { classifyRepoUrl } from './repo-cache.js';

describe('classifyRepoUrl', () => {
  it.each([
    ['file:///srv/git/app.git', { kind: 'file', url: 'file:///srv/git/app.git' }],
    ['/srv/git/app.git', { kind: 'file', url: '/srv/git/app.git' }],
    ['https://github.com/acme/hello.git', { kind: 'http', url: 'https://github.com/acme/hello.git', origin: 'https://github.com/' }],
    ['http://127.0.0.1:8080/x.git', { kind: 'http', url: 'http://127.0.0.1:8080/x.git', origin: 'http://127.0.0.1:8080/' }],
    ['https://bob:s%40cret@git.example.com/a/b.git', { kind: 'http', url: 'https://git.example.com/a/b.git', origin: 'https://git.example.com/', username: 'bob', password: 's@cret' }],
    ['https://tok3n@git.example.com/a/b.git', { kind: 'http', url: 'https://git.example.com/a/b.git', origin: 'https://git.example.com/', username: 'tok3n' }],
    ['ssh://git@github.com/acme/hello.git', { kind: 'ssh', url: 'ssh://git@github.com/acme/hello.git' }],
    ['ssh://git@host:2222/srv/x.git', { kind: 'ssh', url: 'ssh://git@host:2222/srv/x.git' }],
    ['git@github.com:acme/hello.git', { kind: 'ssh', url: 'git@github.com:acme/hello.git' }],
    ['deploy@10.0.0.5:/srv/git/app.git', { kind: 'ssh', url: 'deploy@10.0.0.5:/srv/git/app.git' }],
    ['git://git.example.com/x.git', { kind: 'git', url: 'git://git.example.com/x.git' }],
  ])('%s', (input, expected) => {
    expect(classifyRepoUrl(input)).toEqual(expected);
  });

  it.each([
    ['', 'empty'],
    ['ext::sh -c touch% /tmp/pwned', 'whitespace'],
    ['ext::sh', 'remote helper'],
    ['fd::3', 'remote helper'],
    ['--upload-pack=touch /tmp/x', 'whitespace'],
    ['-oProxyCommand=id', 'starts with "-"'],
    ['relative/path.git', 'is not a file path'],
    ['ftp://example.com/x.git', 'unsupported scheme'],
    ['file://evil.example.com/x.git', 'must be local'],
    ['https://exa mple.com/x', 'whitespace'],
    ['https://example.com/x\n', 'whitespace'],
    ['host:-x', 'is not a file path'],
    ['$(id)@host:x', 'is not a file path'],
    ['ssh://git:hunter22@host/x.git', 'carries a password'],
  ])('refuses %j', (input, why) => {
    let caught: unknown;
    try {
      classifyRepoUrl(input);
    } catch (err) {
      caught = err;
    }
    expect(isSlipwayError(caught, 'invalid_repo_url')).toBe(true);
    expect((caught as Error).message).toContain(why);
  });
});
