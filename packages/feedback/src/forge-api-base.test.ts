import { describe, expect, it } from 'vitest';
import { forgeApiBase } from './forge-api-base.js';

describe('forgeApiBase', () => {
  it.each([
    ['github', 'acme/hello', 'https://github.com/acme/hello', 'https://github.com/acme/hello.git', undefined, 'https://api.github.com'],
    ['github', 'acme/hello', null, 'https://github.com/acme/hello.git', undefined, 'https://api.github.com'],
    ['github', 'acme/hello', 'https://ghe.example.com/acme/hello', 'git@ghe.example.com:acme/hello.git', undefined, 'https://ghe.example.com/api/v3'],
    ['github', 'acme/hello', 'https://github.com/acme/hello', '', 'https://api.example.test/', 'https://api.example.test'],
    ['gitea', 'gitea/webhooks', 'http://localhost:3000/gitea/webhooks', 'http://localhost:3000/gitea/webhooks.git', undefined, 'http://localhost:3000/api/v1'],
    ['gitea', 'acme/hello', 'https://example.com/forge/acme/hello', '', undefined, 'https://example.com/forge/api/v1'],
    ['gitlab', 'group/sub/project', 'https://gitlab.example.com/group/sub/project', '', undefined, 'https://gitlab.example.com/api/v4'],
    ['gitlab', 'mike/diaspora', 'http://example.com/gitlab/mike/diaspora', '', undefined, 'http://example.com/gitlab/api/v4'],
    ['gitlab', 'Mike/Diaspora', 'http://example.com/mike/diaspora', '', undefined, 'http://example.com/api/v4'],
  ] as const)('%s %s (%s) → %s', (provider, fullName, htmlUrl, cloneUrl, configured, expected) => {
    expect(forgeApiBase({ provider, fullName, htmlUrl, cloneUrl }, configured)).toBe(expected);
  });

  it('is null when no address is http(s)', () => {
    expect(forgeApiBase({ provider: 'gitea', fullName: 'a/b', htmlUrl: null, cloneUrl: 'git@host:a/b.git' })).toBeNull();
  });
});
