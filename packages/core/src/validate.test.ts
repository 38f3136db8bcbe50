import { describe, expect, it } from 'vitest';
import { branchOfRef, isAppName, isBranchName, isImageReference, isSha } from './validate.js';

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
    ['x.lock', false], ['a//b', false], ['a@{1}', false], ['brañch', false], ['a\nb', false],
  ])('branch %j → %s', (branch, ok) => expect(isBranchName(branch)).toBe(ok));

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

