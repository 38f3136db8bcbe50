import { describe, expect, it } from 'vitest';
import { configuredRepository, forgeApiBase, forgeWebRoot, hostOf, isSafeCloneUrl, type Provider } from './forge-address.js';

const none = { github: {}, gitea: {}, gitlab: {} };
const own = {
  github: { api_url: 'https://ghe.example.com/api/v3' },
  gitea: { api_url: 'https://git.example.com/forge/api/v1/' },
  gitlab: { api_url: 'https://gitlab.example.com/api/v4' },
};

describe('configuredRepository: where the config says an app lives', () => {
  it.each<[string, Provider | null, typeof none, string | undefined, ReturnType<typeof configuredRepository>]>([
    ['https://github.com/acme/hello.git', 'github', none, undefined, { cloneUrl: 'https://github.com/acme/hello.git', host: 'github.com', webRoot: 'https://github.com', fullName: 'acme/hello' }],
    ['git@GitHub.com:acme/hello.git', 'github', none, undefined, { cloneUrl: 'git@GitHub.com:acme/hello.git', host: 'github.com', webRoot: 'https://GitHub.com', fullName: 'acme/hello' }],
    ['ssh://git@localhost:2222/gitea/webhooks.git', 'gitea', none, undefined, { cloneUrl: 'ssh://git@localhost:2222/gitea/webhooks.git', host: 'localhost', webRoot: 'https://localhost', fullName: 'gitea/webhooks' }],
    ['http://example.com/gitlab/mike/diaspora.git', 'gitlab', none, 'mike/diaspora', { cloneUrl: 'http://example.com/gitlab/mike/diaspora.git', host: 'example.com', webRoot: 'http://example.com/gitlab', fullName: 'mike/diaspora' }],
    ['http://example.com/gitlab/mike/diaspora.git', 'gitlab', none, 'evil/other', { cloneUrl: 'http://example.com/gitlab/mike/diaspora.git', host: 'example.com', webRoot: 'http://example.com', fullName: 'gitlab/mike/diaspora' }],
    // With the forge's address configured, a payload's name does not re-split the path (another project there would get the statuses).
    ['https://gitlab.example.com/platform/team/app.git', 'gitlab', own, 'team/app', { cloneUrl: 'https://gitlab.example.com/platform/team/app.git', host: 'gitlab.example.com', webRoot: 'https://gitlab.example.com', fullName: 'platform/team/app' }],
    ['https://git.example.com/forge/acme/hello.git', 'gitea', own, 'acme/hello', { cloneUrl: 'https://git.example.com/forge/acme/hello.git', host: 'git.example.com', webRoot: 'https://git.example.com/forge', fullName: 'acme/hello' }],
    ['acme/hello', 'github', none, undefined, { cloneUrl: 'https://github.com/acme/hello.git', host: 'github.com', webRoot: 'https://github.com', fullName: 'acme/hello' }],
    ['acme/hello', 'github', own, undefined, { cloneUrl: 'https://ghe.example.com/acme/hello.git', host: 'ghe.example.com', webRoot: 'https://ghe.example.com', fullName: 'acme/hello' }],
    ['acme/hello', 'gitea', own, undefined, { cloneUrl: 'https://git.example.com/forge/acme/hello.git', host: 'git.example.com', webRoot: 'https://git.example.com/forge', fullName: 'acme/hello' }],
    ['acme/hello', 'gitlab', none, undefined, { cloneUrl: 'https://gitlab.com/acme/hello.git', host: 'gitlab.com', webRoot: 'https://gitlab.com', fullName: 'acme/hello' }],
    ['acme/hello', 'gitea', none, undefined, null],
    ['acme/hello', null, own, undefined, null],
    ['file:///srv/git/hello.git', 'github', none, undefined, { cloneUrl: 'file:///srv/git/hello.git', host: null, webRoot: null, fullName: null }],
    ['/srv/git/hello.git', 'github', none, undefined, { cloneUrl: '/srv/git/hello.git', host: null, webRoot: null, fullName: null }],
  ])('%s (%s)', (repo, provider, forges, fullName, expected) => {
    expect(configuredRepository({ repo }, provider, forges, fullName)).toEqual(expected);
  });
});

describe('forgeApiBase: the API root commit statuses go to', () => {
  it.each<[Provider, string | null, typeof none, string | null]>([
    ['github', 'https://github.com', none, 'https://api.github.com'],
    ['github', 'https://ghe.example.com', none, 'https://ghe.example.com/api/v3'],
    ['github', 'https://github.com', { ...none, github: { api_url: 'https://api.example.test/' } }, 'https://api.example.test'],
    ['gitea', 'http://localhost:3000', none, 'http://localhost:3000/api/v1'],
    ['gitea', 'https://example.com/forge', none, 'https://example.com/forge/api/v1'],
    ['gitlab', 'http://example.com/gitlab', none, 'http://example.com/gitlab/api/v4'],
    ['gitea', null, none, null],
    // Another forge's host: a webhook sent to another provider's endpoint must not take this provider's token there.
    ['gitlab', 'https://github.com', none, null],
    ['github', 'https://gitlab.com', none, null],
    ['gitea', 'https://github.com', none, null],
    ['github', 'https://git.example.com', { ...none, gitea: { api_url: 'https://git.example.com/api/v1' } }, null],
    ['gitea', 'https://git.example.com', { ...none, gitea: { api_url: 'https://git.example.com/api/v1' } }, 'https://git.example.com/api/v1'],
    // The public homes stay another forge's when that forge's api_url points at a server of one's own.
    ['gitlab', 'https://github.com', { ...none, github: { api_url: 'https://ghe.corp/api/v3' } }, null],
    ['github', 'https://gitlab.com', { ...none, gitlab: { api_url: 'https://gitlab.corp/api/v4' } }, null],
  ])('%s at %s', (provider, webRoot, forges, expected) => {
    expect(forgeApiBase(provider, webRoot, forges)).toBe(expected);
  });

  it('maps api_url back to the web root it hangs from', () => {
    expect(forgeWebRoot('github', { ...none, github: { api_url: 'https://api.github.com' } })).toBe('https://github.com');
    expect(forgeWebRoot('gitea', own)).toBe('https://git.example.com/forge');
    expect(forgeWebRoot('gitlab', own)).toBe('https://gitlab.example.com');
    expect(forgeWebRoot('gitea', none)).toBeNull();
  });
});

describe('hostOf', () => {
  it.each([
    ['https://GitHub.com/a/b', 'github.com'],
    ['ssh://git@host.example:22/a/b', 'host.example'],
    ['git@host.example:a/b.git', 'host.example'],
    ['http://[::1]:3000/a/b', '::1'],
    ['file:///etc', null],
    ['/etc/passwd', null],
  ])('%s → %s', (address, host) => {
    expect(hostOf(address)).toBe(host);
  });
});

describe('isSafeCloneUrl', () => {
  it.each([
    ['https://github.com/acme/hello.git', true],
    ['http://localhost:3000/gitea/webhooks.git', true],
    ['ssh://git@github.com/acme/hello.git', true],
    ['ssh://gitea@localhost:2222/gitea/webhooks.git', true],
    ['git://github.com/acme/hello.git', true],
    ['git@github.com:acme/hello.git', true],
    ['https://gitlab.example.com/group/sub/project.git', true],
    ['--upload-pack=touch /tmp/pwned', false],
    ['-u', false],
    ['git@github.com:-oProxyCommand=x', false],
    ['ssh://-oProxyCommand=touch%20x/acme/hello', false],
    ['ext::sh -c touch% /tmp/pwned', false],
    ['file:///etc/passwd', false],
    ['/srv/git/hello.git', false],
    ['https://user:token@github.com/acme/hello.git', false],
    ['https://user@github.com/acme/hello.git', false],
    ['https://github.com/acme/../../etc/passwd', false],
    ['https://github.com/acme/%2e%2e/x', false],
    ['https://github.com/acme/hello.git?x=1', false],
    ['https://github.com/acme/hello.git#x', false],
    ['https://github.com/acme/hello\n.git', false],
    ['https://github.com/acme/hello .git', false],
    ['https://github.com/', false],
    ['https://', false],
    ['', false],
    [42, false],
    [`https://github.com/${'a'.repeat(3000)}`, false],
  ])('%j → %s', (url, ok) => expect(isSafeCloneUrl(url)).toBe(ok));
});
