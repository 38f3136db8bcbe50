import { describe, expect, it } from 'vitest';
import { UnavailableError } from '@slipway/core/slipway-error';
import { gitFailure } from './git-failure.js';

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
    ['fatal: not a valid object name', 'git_failed', 'git fetch failed: not a valid object name'],
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
