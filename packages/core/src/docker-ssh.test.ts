import { describe, expect, it } from 'vitest';
import { sshDialArgv, sshTarget } from './docker-ssh.js';

describe('sshTarget', () => {
  it.each([
    ['ssh://m1.example', { host: 'm1.example' }],
    ['ssh://deploy@m1.example:2222', { user: 'deploy', host: 'm1.example', port: 2222 }],
    ['ssh://root@10.0.0.5/', { user: 'root', host: '10.0.0.5' }],
    ['ssh://ops@[2001:db8::5]:22', { user: 'ops', host: '2001:db8::5', port: 22 }],
  ])('%s', (url, target) => {
    expect(sshTarget(url)).toEqual(target);
  });

  it.each([
    ['ssh://deploy:secret@m1', /must not hold a password/],
    ['ssh://m1/run/docker.sock', /has no path/],
    ['ssh://-oProxyCommand=touch%20x', /not a host name/],
    ['ssh://-x@m1', /not a user name/],
    ['tcp://m1:2376', /expected an ssh:\/\/ URL/],
    ['m1', /expected ssh:\/\/\[user@\]host\[:port\]/],
    ['ssh://m1:0', /not a port: 0/],
  ])('refuses %s', (url, problem) => {
    expect(() => sshTarget(url)).toThrow(problem);
  });
});

describe('sshDialArgv', () => {
  it('never asks, ends the options before the host, and trusts only the given host keys when given', () => {
    const always = ['ssh', '-T', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=10', '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=3'];
    expect(sshDialArgv({ user: 'deploy', host: 'm1', port: 2222 }, { key: '/k/my id', knownHosts: '/k/known hosts' })).toEqual([
      ...always, '-p', '2222', '-i', '/k/my id', '-o', 'IdentitiesOnly=yes', '-o', 'UserKnownHostsFile="/k/known hosts"', '-o', 'GlobalKnownHostsFile=/dev/null',
      '-l', 'deploy', '--', 'm1', 'docker', 'system', 'dial-stdio',
    ]);
    expect(sshDialArgv({ host: 'm1' })).toEqual([...always, '--', 'm1', 'docker', 'system', 'dial-stdio']);
  });
});
