import { describe, expect, it } from 'vitest';
import { checkArgv, renderHarness } from './nginx-apply.js';

const paths = { file: '/c/.slipway-a.conf.1.tmp', main: '/tmp/h/nginx.conf' };

describe('checkArgv', () => {
  it.each([
    ['default: -c <harness> appended', ['nginx', '-t'], ['nginx', '-t', '-c', paths.main]],
    ['a prefix and main config: the last -c wins', ['nginx', '-p', '/n/', '-c', '/n/nginx.conf', '-t', '-q'], ['nginx', '-p', '/n/', '-c', '/n/nginx.conf', '-t', '-q', '-c', paths.main]],
    ['{main} placed by the user', ['sudo', 'nginx', '-t', '-c', '{main}'], ['sudo', 'nginx', '-t', '-c', paths.main]],
    ['{file} for a checker of single files', ['my-check', '--file', '{file}'], ['my-check', '--file', paths.file]],
    ['both', ['chk', '{main}', '{file}'], ['chk', paths.main, paths.file]],
    ['only whole arguments are placeholders', ['chk', '--x={file}'], ['chk', '--x={file}', '-c', paths.main]],
  ])('%s', (_what, cmd, expected) => {
    expect(checkArgv(cmd, paths)).toEqual(expected);
  });
});

describe('renderHarness', () => {
  it('keeps pid, logs and temp files in its own directory and includes the given files', () => {
    const text = renderHarness('/tmp/h', ['/c/slipway-b.conf', paths.file]);
    expect(text).toContain('pid /tmp/h/nginx.pid;');
    expect(text).toContain('error_log /tmp/h/error.log;');
    expect(text).toContain('proxy_temp_path /tmp/h/proxy;');
    expect(text).toContain('variables_hash_bucket_size 128;');
    expect(text).toMatch(/include \/c\/slipway-b\.conf;\n\s+include \/c\/\.slipway-a\.conf\.1\.tmp;/);
  });
});
