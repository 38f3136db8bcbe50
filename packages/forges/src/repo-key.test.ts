import { describe, expect, it } from 'vitest';
import { repoKey } from './repo-key.js';

describe('repoKey', () => {
  it.each([
    ['https://github.com/acme/hello.git', { host: 'github.com', path: 'acme/hello' }],
    ['https://github.com/Acme/Hello', { host: 'github.com', path: 'acme/hello' }],
    ['https://github.com/acme/hello/', { host: 'github.com', path: 'acme/hello' }],
    ['http://localhost:3000/gitea/webhooks.git', { host: 'localhost', path: 'gitea/webhooks' }],
    ['https://bob:secret@git.example.com/acme/hello.git', { host: 'git.example.com', path: 'acme/hello' }],
    ['git@github.com:acme/hello.git', { host: 'github.com', path: 'acme/hello' }],
    ['github.com:acme/hello', { host: 'github.com', path: 'acme/hello' }],
    ['ssh://git@github.com/acme/hello.git', { host: 'github.com', path: 'acme/hello' }],
    ['ssh://gitea@localhost:2222/gitea/webhooks.git', { host: 'localhost', path: 'gitea/webhooks' }],
    ['git://github.com/acme/hello.git', { host: 'github.com', path: 'acme/hello' }],
    ['https://gitlab.example.com/group/sub/project.git', { host: 'gitlab.example.com', path: 'group/sub/project' }],
    ['acme/hello', { host: null, path: 'acme/hello' }],
    ['Acme/Hello.git', { host: null, path: 'acme/hello' }],
    ['/srv/git/hello.git', null],
    ['file:///srv/git/hello.git', null],
    ['hello', null],
    ['', null],
    ['https://github.com/acme', null],
    ['https://github.com/acme/../etc', null],
    ['https://github.com/acme/he llo', null],
    ['--upload-pack=touch /tmp/x', null],
    ['ftp://host/acme/hello', null],
  ])('%j → %j', (reference, expected) => expect(repoKey(reference)).toEqual(expected));
});
