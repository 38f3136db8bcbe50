import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '@slipway/core/slipway-error';
import { createGitRunner, DEFAULT_TOKEN_USERNAME, gitEnv, shellQuote, gitFailure } from './git-runner.js';
import { classifyRepoUrl } from './repo-cache.js';

const base = { PATH: '/usr/bin', HOME: '/home/ops', GIT_DIR: '/elsewhere', GIT_SSH_COMMAND: 'evil', git_askpass: '/x', EDITOR: 'vim', PAGER: 'less', LANG: 'de_DE.UTF-8' };
const basic = (user: string, pass: string) => `Authorization: Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

describe('gitEnv', () => {
  it.each([
    {
      name: 'file repository: no credentials, only the file protocol',
      repo: 'file:///srv/app.git',
      credentials: undefined,
      expected: { GIT_ALLOW_PROTOCOL: 'file' },
      allow: ['GIT_DIR', 'GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', 'GIT_CONFIG_GLOBAL', 'GIT_ALLOW_PROTOCOL'],
      unsafe: { allowUnsafeConfigPaths: true },
    },
    {
      name: 'https with username and password: a Basic header scoped to the origin',
      repo: 'https://git.example.com/acme/app.git',
      credentials: { username: 'bob', password: 'hunter22' },
      expected: {
        GIT_ALLOW_PROTOCOL: 'http:https',
        GIT_CONFIG_COUNT: '1',
        GIT_CONFIG_KEY_0: 'http.https://git.example.com/.extraHeader',
        GIT_CONFIG_VALUE_0: basic('bob', 'hunter22'),
      },
      allow: ['GIT_DIR', 'GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', 'GIT_CONFIG_GLOBAL', 'GIT_ALLOW_PROTOCOL', 'GIT_CONFIG_COUNT', 'GIT_CONFIG_KEY_0', 'GIT_CONFIG_VALUE_0'],
      unsafe: { allowUnsafeConfigEnvCount: true, allowUnsafeConfigPaths: true },
    },
    {
      name: 'https with a token only: the conventional username',
      repo: 'https://git.example.com:8443/app.git',
      credentials: { password: 'tok3n' },
      expected: { GIT_CONFIG_KEY_0: 'http.https://git.example.com:8443/.extraHeader', GIT_CONFIG_VALUE_0: basic(DEFAULT_TOKEN_USERNAME, 'tok3n') },
      allow: ['GIT_DIR', 'GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', 'GIT_CONFIG_GLOBAL', 'GIT_ALLOW_PROTOCOL', 'GIT_CONFIG_COUNT', 'GIT_CONFIG_KEY_0', 'GIT_CONFIG_VALUE_0'],
      unsafe: { allowUnsafeConfigEnvCount: true, allowUnsafeConfigPaths: true },
    },
    {
      name: 'credentials embedded in the URL are used, not left in it',
      repo: 'https://amy:pa55word@git.example.com/app.git',
      credentials: undefined,
      expected: { GIT_CONFIG_VALUE_0: basic('amy', 'pa55word') },
      allow: ['GIT_DIR', 'GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', 'GIT_CONFIG_GLOBAL', 'GIT_ALLOW_PROTOCOL', 'GIT_CONFIG_COUNT', 'GIT_CONFIG_KEY_0', 'GIT_CONFIG_VALUE_0'],
      unsafe: { allowUnsafeConfigEnvCount: true, allowUnsafeConfigPaths: true },
    },
    {
      name: 'a username alone sends nothing',
      repo: 'https://git.example.com/app.git',
      credentials: { username: 'bob' },
      expected: { GIT_ALLOW_PROTOCOL: 'http:https' },
      allow: ['GIT_DIR', 'GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', 'GIT_CONFIG_GLOBAL', 'GIT_ALLOW_PROTOCOL'],
      unsafe: { allowUnsafeConfigPaths: true },
    },
    {
      name: 'ssh with a key: identity only, no prompts, the path quoted for sh',
      repo: 'git@github.com:acme/app.git',
      credentials: { ssh_key: "/etc/slipway/keys/it's key" },
      expected: { GIT_ALLOW_PROTOCOL: 'ssh', GIT_SSH_VARIANT: 'ssh', GIT_SSH_COMMAND: `ssh -i '/etc/slipway/keys/it'\\''s key' -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=30` },
      allow: ['GIT_DIR', 'GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', 'GIT_CONFIG_GLOBAL', 'GIT_ALLOW_PROTOCOL', 'GIT_SSH_COMMAND', 'GIT_SSH_VARIANT'],
      unsafe: { allowUnsafeSshCommand: true, allowUnsafeConfigPaths: true },
    },
    {
      name: 'ssh without a key still never prompts; an http password is ignored',
      repo: 'ssh://git@host/app.git',
      credentials: { password: 'unused' },
      expected: { GIT_SSH_COMMAND: 'ssh -o BatchMode=yes -o ConnectTimeout=30' },
      allow: ['GIT_DIR', 'GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', 'GIT_CONFIG_GLOBAL', 'GIT_ALLOW_PROTOCOL', 'GIT_SSH_COMMAND', 'GIT_SSH_VARIANT'],
      unsafe: { allowUnsafeSshCommand: true, allowUnsafeConfigPaths: true },
    },
  ])('$name', ({ repo, credentials, expected, allow, unsafe }) => {
    const result = gitEnv({ base, gitDir: '/work/repos/app', repo: classifyRepoUrl(repo), credentials });
    expect(result.env).toMatchObject({ ...expected, GIT_DIR: '/work/repos/app', GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C', PATH: '/usr/bin', HOME: '/home/ops' });
    expect(result.allowEnvironment.sort()).toEqual(allow.sort());
    expect(result.unsafe).toEqual(unsafe);
    // The ambient variables that could run programs or redirect git are gone.
    for (const key of ['GIT_SSH_COMMAND', 'git_askpass', 'EDITOR', 'PAGER']) {
      if (!(key in expected)) expect(result.env).not.toHaveProperty(key);
    }
  });

  it('lists the password and the encoded header as secrets, and puts them in no key', () => {
    const result = gitEnv({ base, gitDir: '/g', repo: classifyRepoUrl('https://h/x.git'), credentials: { username: 'u', password: 'hunter22' } });
    const token = Buffer.from('u:hunter22').toString('base64');
    expect(result.secrets).toEqual(['hunter22', token]);
    expect(Object.keys(result.env).join(' ')).not.toContain('hunter22');
  });

  it('local-only commands get no transport at all', () => {
    const result = gitEnv({ base, gitDir: '/g' });
    expect(result.env).not.toHaveProperty('GIT_ALLOW_PROTOCOL');
    expect(result.allowEnvironment.sort()).toEqual(['GIT_CONFIG_GLOBAL', 'GIT_CONFIG_NOSYSTEM', 'GIT_DIR', 'GIT_TERMINAL_PROMPT']);
  });
});

describe('shellQuote', () => {
  it.each([
    ['ssh', 'ssh'],
    ['/a/b-c_d.key', '/a/b-c_d.key'],
    ['with space', "'with space'"],
    ["it's", "'it'\\''s'"],
    ['$(id)', "'$(id)'"],
    ['`id`;rm', "'`id`;rm'"],
    ['', "''"],
  ])('%j → %s', (word, quoted) => expect(shellQuote(word)).toBe(quoted));
});

const url = 'https://git.example.com/acme/app.git';

describe('gitFailure', () => {
  it.each([
    ["fatal: Authentication failed for 'https://git.example.com/acme/app.git/'", 'git_auth_failed', 'authentication to https://git.example.com/acme/app.git failed: Authentication failed'],
    ["fatal: could not read Username for 'https://git.example.com': terminal prompts disabled", 'git_auth_failed', 'could not read Username'],
    ['remote: HTTP Basic: Access denied\nfatal: Authentication failed', 'git_auth_failed', 'HTTP Basic: Access denied'],
    ["fatal: unable to access 'https://git.example.com/acme/app.git/': The requested URL returned error: 403", 'git_auth_failed', 'error: 403'],
    ['git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.', 'git_auth_failed', 'Permission denied (publickey)'],
    ['Host key verification failed.\nfatal: Could not read from remote repository.', 'git_auth_failed', 'Host key verification failed'],
    ["fatal: repository 'https://git.example.com/acme/nope.git/' not found", 'repo_not_found', 'not found'],
    ["fatal: '/srv/nope.git' does not appear to be a git repository\nfatal: Could not read from remote repository.", 'repo_not_found', 'does not appear to be a git repository'],
    ["fatal: unable to access 'https://git.example.com/acme/app.git/': Could not resolve host: git.example.com", 'unavailable', 'is unreachable: unable to access'],
    ["fatal: unable to access 'http://127.0.0.1:1/x.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server", 'unavailable', 'Failed to connect'],
    ['ssh: connect to host 127.0.0.1 port 22: Connection refused\nfatal: Could not read from remote repository.', 'unavailable', 'Connection refused'],
    ["fatal: unable to access 'https://git.example.com/a.git/': The requested URL returned error: 503", 'unavailable', 'error: 503'],
    ['error: RPC failed; curl 56 GnuTLS recv error (-9)\nfatal: the remote end hung up unexpectedly', 'unavailable', 'RPC failed'],
    ['remote: Counting objects: 100% (3/3), done.\nfatal: write error: No space left on device\nfatal: fetch-pack: invalid index-pack output', 'unavailable', 'git fetch failed on this host: write error: No space left on device'],
    ['fatal: not a valid object name', 'git_failed', 'git fetch failed: not a valid object name'],
    ["remote: Enumerating objects: 9, done.\nerror: cannot lock ref 'refs/heads/master': Unable to create '/w/repos/app/refs/heads/master.lock': File exists.", 'git_failed', "git fetch failed: cannot lock ref 'refs/heads/master'"],
  ])('%j → %s', (output, code, text) => {
    const err = gitFailure(output, { action: 'fetch', url });
    expect(err.code).toBe(code);
    expect(err instanceof UnavailableError).toBe(code === 'unavailable');
    expect(err.message.split('\n', 1)[0]).toContain(text);
  });

  it('scrubs URL credentials and known secrets from every line', () => {
    const err = gitFailure("fatal: unable to access 'https://bob:hunter22@h/x.git/': Could not resolve host: h\nheader s3cr3t-token", { action: 'fetch', secrets: ['s3cr3t-token'] });
    expect(err.message).not.toContain('hunter22');
    expect(err.message).not.toContain('s3cr3t-token');
    expect(err.message).toContain('https://***@h/x.git/');
  });
});

describe('GitRunner.probe', () => {
  // Made in beforeAll: a run that filters these tests out runs no afterAll either.
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'slipway-probe-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const missing = 'd'.repeat(40);

  it('answers null for an object or revision git does not have, and its output for one it has', async () => {
    execFileSync('git', ['init', '--quiet', '--bare', dir]);
    const git = createGitRunner({ gitDir: dir });
    for (const args of [['cat-file', '-e', '--end-of-options', `${missing}^{commit}`], ['cat-file', '-t', '--end-of-options', missing], ['rev-list', '--max-count=2', '--end-of-options', missing], ['merge-base', '--end-of-options', missing, missing]]) {
      expect(await git.probe(args), args.join(' ')).toBeNull();
    }
    expect(await git.probe(['rev-parse', '--verify', '--quiet', '--end-of-options', 'refs/heads/none^{commit}'])).toBe('');
    const blob = execFileSync('git', ['--git-dir', dir, 'hash-object', '-w', '--stdin'], { input: 'x\n', encoding: 'utf8' }).trim();
    expect(await git.probe(['cat-file', '-t', '--end-of-options', blob])).toBe('blob');
  });

  it('throws for an object that is there but cannot be read (cut short by a crash): a damaged cache is not a missing commit', async () => {
    const damaged = join(dir, 'damaged.git');
    execFileSync('git', ['init', '--quiet', '--bare', damaged]);
    const blob = execFileSync('git', ['--git-dir', damaged, 'hash-object', '-w', '--stdin'], { input: 'some content\n', encoding: 'utf8' }).trim();
    const file = join(damaged, 'objects', blob.slice(0, 2), blob.slice(2));
    chmodSync(file, 0o644);
    writeFileSync(file, readFileSync(file).subarray(0, 5));
    const err = await createGitRunner({ gitDir: damaged }).probe(['cat-file', '-t', '--end-of-options', blob]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'git_failed' });
  });

  it('throws when git cannot answer at all: a broken clone is not a commit that is missing', async () => {
    const broken = join(dir, 'not-a-repository');
    mkdirSync(broken);
    const err = await createGitRunner({ gitDir: broken }).probe(['cat-file', '-e', '--end-of-options', `${missing}^{commit}`]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'git_failed' });
    expect((err as Error).message).toMatch(/not a git repository/);
  });

  it('reads neither the system\'s nor the worker user\'s git config (an insteadOf there would send fetches elsewhere)', async () => {
    const home = join(dir, 'home');
    mkdirSync(home, { recursive: true });
    writeFileSync(join(home, '.gitconfig'), '[url "https://elsewhere.example/"]\n\tinsteadOf = https://github.com/\n[slipway]\n\tprobe = leaked\n');
    const saved = process.env.HOME;
    process.env.HOME = home;
    try {
      const git = createGitRunner({ gitDir: dir });
      expect(await git.probe(['config', '--get', 'slipway.probe'])).toBe('');
      expect(await git.probe(['ls-remote', '--get-url', 'https://github.com/acme/app.git'])).toBe('https://github.com/acme/app.git');
    } finally {
      process.env.HOME = saved;
    }
  });

  it('logs the start of a line of its output that never ends, cut, and what follows it; never holds it whole', async () => {
    const noisy = join(dir, 'noisy.git');
    execFileSync('git', ['init', '--quiet', '--bare', noisy]);
    writeFileSync(join(noisy, 'hooks', 'pre-commit'), '#!/bin/sh\nhead -c 200000 /dev/zero | tr "\\0" x >&2\nprintf "\\nafter\\n" >&2\n', { mode: 0o755 });
    const lines: string[] = [];
    await createGitRunner({ gitDir: noisy, log: (line) => lines.push(line) }).run(['hook', 'run', 'pre-commit'], { stream: true });
    expect(lines.map((l) => l.length)).toEqual([16 * 1024 + ' [line cut]'.length, 'after'.length]);
    expect(lines[1]).toBe('after');
  });

  it('stops a git whose output runs on in one line past 4 MB: git_failed, its output never held whole', async () => {
    const endless = join(dir, 'endless.git');
    execFileSync('git', ['init', '--quiet', '--bare', endless]);
    writeFileSync(join(endless, 'hooks', 'pre-commit'), '#!/bin/sh\nwhile :; do head -c 65536 /dev/zero | tr "\\0" x >&2 || exit 1; done\n', { mode: 0o755 });
    const lines: string[] = [];
    const err = await createGitRunner({ gitDir: endless, log: (line) => lines.push(line) }).run(['hook', 'run', 'pre-commit'], { stream: true, action: 'fetch' }).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'git_failed', message: 'git fetch printed a line of more than 4 MB without ending it, and was stopped' });
    expect(lines).toHaveLength(1);
  });

  it('a git killed by a signal (the OOM killer, a stop of the worker\'s group) failed, though it printed nothing: unavailable, tried again', async () => {
    const killing = join(dir, 'killing.git');
    execFileSync('git', ['init', '--quiet', '--bare', killing]);
    // A hook that kills the git running it, as the OOM killer would.
    writeFileSync(join(killing, 'hooks', 'pre-commit'), '#!/bin/sh\nkill -9 $PPID\n', { mode: 0o755 });
    const err = await createGitRunner({ gitDir: killing }).run(['hook', 'run', 'pre-commit'], { action: 'worktree add' }).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'unavailable' });
    expect((err as Error).message).toMatch(/^git worktree add failed on this host: git was killed by a signal before it finished/);
  });
});
