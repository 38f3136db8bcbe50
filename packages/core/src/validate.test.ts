import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { branchOfRef, isAppName, isBranchName, isGitBranchName, isImageReference, isSha } from './validate.js';

describe('validators', () => {
  it.each([
    ['hello', true], ['a', true], ['hello-world-2', true], ['a'.repeat(63), true],
    ['', false], ['-hello', false], ['Hello', false], ['../etc', false], ['a'.repeat(64), false], ['hello world', false], ['hello;rm', false],
  ])('app name %j → %s', (name, ok) => expect(isAppName(name)).toBe(ok));

  it.each([
    ['a'.repeat(40), true], ['0123456789abcdef0123456789abcdef01234567', true],
    ['A'.repeat(40), false], ['a'.repeat(39), false], ['g'.repeat(40), false], ['$(touch x)'.padEnd(40, 'a'), false],
  ])('sha %j → %s', (sha, ok) => expect(isSha(sha)).toBe(ok));

  it.each([
    ['master', true], ['feature/login', true], ['release-1.2', true],
    ['-x', false], ['a..b', false], ['a b', false], ['a;b', false], ['$(id)', false], ['.hidden', false], ['a/.b', false],
    ['x.lock', false], ['x/y.lock/z', false], ['a//b', false], ['a@{1}', false], ['brañch', false], ['a\nb', false],
  ])('branch %j → %s', (branch, ok) => expect(isBranchName(branch)).toBe(ok));

  it('knows a branch name as git does (git check-ref-format --branch), wider than the branches Slipway deploys', () => {
    const names = [
      'master', 'feature/login', 'fix/#123-crash', "bob's-wip", 'feature/ümlaut', 'brañch', 'emoji😀', '$(id)', 'a;b', 'a"b', 'a{b}', 'a|b',
      'dependabot/npm_and_yarn/@babel/core-7.23.0', 'renovate/@types-node-20.x+build.1', 'a@', '@a',
      '-x', 'a..b', 'a b', '$(touch /tmp/x)', '.hidden', 'a/.b', 'x.lock', 'x/y.lock/z', 'a//b', 'a~b', 'a^b', 'a:b', 'a?b', 'a*b', 'a[b', 'a\\b',
      'a.', '/a', 'a/', 'a\tb', 'a\u007fb', 'a'.repeat(255), 'a'.repeat(256),
    ];
    const git = (name: string) => spawnSync('git', ['check-ref-format', '--branch', name]).status === 0;
    // git's own limit on a name is the file system's; a forge's is 255 bytes, and so is this one.
    expect(names.map((name) => [name, isGitBranchName(name)])).toEqual(names.map((name) => [name, git(name) && name.length <= 255]));
    for (const name of names) if (isBranchName(name)) expect(isGitBranchName(name), name).toBe(true);
  });

  it('extracts only branch refs', () => {
    expect(branchOfRef('refs/heads/master')).toBe('master');
    expect(branchOfRef('refs/heads/feature/x')).toBe('feature/x');
    expect(branchOfRef('refs/tags/v1')).toBeNull();
    expect(branchOfRef('refs/heads/$(reboot)')).toBeNull();
    expect(branchOfRef(42)).toBeNull();
  });
});

describe('isImageReference', () => {
  const digest = `sha256:${'a'.repeat(64)}`;
  it.each([
    ['busybox', true], ['slipway/web:1', true], ['ghcr.io/acme/web:v1.2', true],
    ['registry.example.com:5000/team/app:1.2', true], [`127.0.0.1:5000/slipway/web:abababababab@${digest}`, true], [`web@${digest}`, true],
    ['--privileged', false], ['-x/web', false], ['web:1 --rm', false], ['Web/App', false], ['web:', false], ['web@sha256:abc', false], [`a/${'b'.repeat(260)}`, false], [42, false],
  ])('%j → %s', (value, ok) => expect(isImageReference(value)).toBe(ok));
});

