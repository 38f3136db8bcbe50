import { describe, expect, it } from 'vitest';
import { isSafeCloneUrl } from './is-safe-clone-url.js';

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
