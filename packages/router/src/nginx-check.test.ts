import { describe, expect, it } from 'vitest';
import { checkArgv, rejectedFile, renderHarness } from './nginx-check.js';

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
    expect(text).toContain('pid "/tmp/h/nginx.pid";');
    expect(text).toContain('error_log "/tmp/h/error.log";');
    expect(text).toContain('proxy_temp_path "/tmp/h/proxy";');
    expect(text).toContain('variables_hash_bucket_size 128;');
    expect(text).toMatch(/include "\/c\/slipway-b\.conf";\n\s+include "\/c\/\.slipway-a\.conf\.1\.tmp";/);
  });

  it('quotes every path: a conf dir or temp dir with a space, ;, { or a quote is one argument', () => {
    const text = renderHarness('/tmp/my "h"', ['/srv/conf d;{x}/slipway-b.conf']);
    expect(text).toContain('pid "/tmp/my \\"h\\"/nginx.pid";');
    expect(text).toContain('include "/srv/conf d;{x}/slipway-b.conf";');
  });
});

describe('rejectedFile', () => {
  it.each([
    ['nginx: [emerg] a duplicate default server for 127.0.0.1:8080 in /etc/nginx/conf.d/slipway-b.conf:3\nnginx: configuration file /tmp/slipway-check-x/nginx.conf test failed', '/etc/nginx/conf.d/slipway-b.conf'],
    ['nginx: [emerg] unknown directive "bogus" in /srv/conf d/slipway-a.conf:1', '/srv/conf d/slipway-a.conf'],
    ['nginx: [emerg] host not found in upstream "x:1" in /c/slipway-a.conf:2', '/c/slipway-a.conf'],
    ['nginx: [emerg] no "events" section in configuration', null],
    ['nginx: [warn] the "listen ... http2" directive is deprecated, use the "http2" directive instead in /c/slipway-a.conf:3\nnginx: [emerg] a duplicate default server for 127.0.0.1:8080 in /c/slipway-y.conf:2', '/c/slipway-y.conf'],
  ])('%s → %s', (words, file) => {
    expect(rejectedFile(words)).toBe(file);
  });
});
