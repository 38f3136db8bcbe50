import { describe, expect, it } from 'vitest';
import { matchApps, repoKey } from './match-apps.js';
import type { RepositoryIdentity } from './webhook-body.js';

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
    ['/srv/git/hello.git', { host: '/', path: 'srv/git/hello' }],
    ['file:///srv/git/Hello.git/', { host: '/', path: 'srv/git/hello' }],
    ['file://localhost/srv/git/hello', { host: '/', path: 'srv/git/hello' }],
    ['file://elsewhere/srv/git/hello', null],
    ['/hello.git', null],
    ['/srv/../etc/passwd', null],
    ['srv/git/hello.git', { host: null, path: 'srv/git/hello' }],
    ['hello', null],
    ['', null],
    ['https://github.com/acme', null],
    ['https://github.com/acme/../etc', null],
    ['https://github.com/acme/he llo', null],
    ['--upload-pack=touch /tmp/x', null],
    ['ftp://host/acme/hello', null],
  ])('%j → %j', (reference, expected) => expect(repoKey(reference)).toEqual(expected));
});

const github: RepositoryIdentity = {
  fullName: 'Codertocat/Hello-World',
  urls: ['https://github.com/Codertocat/Hello-World.git', 'git@github.com:Codertocat/Hello-World.git', 'https://github.com/Codertocat/Hello-World'],
};
const gitlab: RepositoryIdentity = {
  fullName: 'mike/diaspora',
  urls: ['http://example.com/mike/diaspora.git', 'git@example.com:mike/diaspora.git', 'http://example.com/mike/diaspora'],
};
const app = (repo: string, branch = 'master', name = 'a') => ({ name, repo, branch });

describe('matchApps', () => {
  it.each([
    ['https clone URL', app('https://github.com/Codertocat/Hello-World.git'), github, true],
    ['without .git, other case', app('https://github.com/codertocat/hello-world'), github, true],
    ['SSH URL', app('git@github.com:codertocat/hello-world.git'), github, true],
    ['ssh:// URL', app('ssh://git@github.com/Codertocat/Hello-World'), github, true],
    ['web URL with trailing slash', app('https://github.com/Codertocat/Hello-World/'), github, true],
    ['bare owner/name, any host', app('codertocat/hello-world'), github, true],
    ['another repository', app('https://github.com/Codertocat/Other'), github, false],
    ['same path on another host', app('https://gitlab.com/Codertocat/Hello-World.git'), github, false],
    ['a prefix of the path', app('https://github.com/Codertocat/Hello'), github, false],
    ['a local path matches no forge address', app('/srv/git/Hello-World.git'), github, false],
    ['a local path matches the same path', app('/srv/git/hello.git'), { fullName: 'acme/hello', urls: ['file:///srv/git/hello', 'https://github.com/acme/hello'] }, true],
    ['a local path matches no other path', app('/srv/git/hello.git'), { fullName: 'acme/hello', urls: ['/srv/other/hello.git'] }, false],
    ['GitLab http URL', app('http://example.com/mike/diaspora.git'), gitlab, true],
    ['GitLab SSH URL', app('git@example.com:mike/diaspora.git'), gitlab, true],
    ['GitLab owner/name', app('mike/diaspora'), gitlab, true],
  ])('%s', (_name, candidate, identity, expected) => {
    expect(matchApps([candidate], identity)).toHaveLength(expected ? 1 : 0);
  });

  it('a full name alone does not match an app configured with a host', () => {
    expect(matchApps([app('https://github.com/mike/diaspora')], { fullName: 'mike/diaspora', urls: [] })).toEqual([]);
    expect(matchApps([app('mike/diaspora')], { fullName: 'mike/diaspora', urls: [] })).toHaveLength(1);
  });

  it('with a ref, keeps only apps of that branch, in config order; several apps may share a repository', () => {
    const apps = [
      app('https://github.com/Codertocat/Hello-World.git', 'master', 'web'),
      app('codertocat/hello-world', 'develop', 'staging'),
      app('git@github.com:Codertocat/Hello-World', 'master', 'worker'),
      app('https://github.com/acme/other', 'master', 'other'),
    ];
    expect(matchApps(apps, github).map((a) => a.name)).toEqual(['web', 'staging', 'worker']);
    expect(matchApps(apps, github, 'refs/heads/master').map((a) => a.name)).toEqual(['web', 'worker']);
    expect(matchApps(apps, github, 'refs/heads/develop').map((a) => a.name)).toEqual(['staging']);
    expect(matchApps(apps, github, 'refs/heads/Master')).toEqual([]);
    expect(matchApps(apps, github, 'refs/tags/master')).toEqual([]);
  });
});
