import { describe, expect, it } from 'vitest';
import { cutLine, MAX_LINE_BYTES, scrubLine, scrubSecrets } from './logger.js';

/** The URL-credential regex scrubSecrets agrees with: the behaviour to keep, on inputs small enough for its backtracking. */
const REFERENCE = /(\b[a-z][a-z0-9+.-]*:\/\/)[^\s/]+@/gi;
const reference = (text: string) => text.replace(REFERENCE, '$1***@');

/** A seeded generator, so a failing case can be reproduced. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const MB = 1024 * 1024;

/** Milliseconds a synchronous call took. */
function timed(fn: () => unknown): number {
  const started = performance.now();
  fn();
  return performance.now() - started;
}

describe('scrubSecrets', () => {
  it.each([
    ['fatal: https://bob:hunter22@git.example.com/x.git not found', 'fatal: https://***@git.example.com/x.git not found'],
    ['https://token@github.com/a/b', 'https://***@github.com/a/b'],
    ['HTTPS://Bob:Pw@host and ssh://git:x@h2', 'HTTPS://***@host and ssh://***@h2'],
    ['git+ssh://u:p@h', 'git+ssh://***@h'],
    ['a.b-c+d://u@h', 'a.b-c+d://***@h'],
    ['-http://u@h', '-http://***@h'],
    ['_http://u@h', '_http://u@h'],
    ['1http://u@h', '1http://u@h'],
    ['http://@h', 'http://@h'],
    ['http://u:@h', 'http://***@h'],
    ['http://u:p:q@h', 'http://***@h'],
    ['http://u/p@h', 'http://u/p@h'],
    ['http://u p@h', 'http://u p@h'],
    ['http://u:p p@h', 'http://u:p p@h'],
    ['http://a@b@c', 'http://***@c'],
    ['redis://:s3cret@cache:6379/0', 'redis://***@cache:6379/0'],
    ['https://ci:Xk9@pQ2zL7@github.com/a/b', 'https://***@github.com/a/b'],
    ['https://:glpat-abc@gitlab.com/a/b', 'https://***@gitlab.com/a/b'],
    ['http://@@h', 'http://***@h'],
    ['x://u@h://v@w', 'x://***@h://***@w'],
    ['https://example.com/path', 'https://example.com/path'],
    ['no url here', 'no url here'],
    ['://u@h', '://u@h'],
    ['\u00e9http://u@h', '\u00e9http://***@h'],
    ['http://u\u00a0p@h', 'http://u\u00a0p@h'],
  ])('%j → %j', (input, expected) => {
    expect(scrubSecrets(input)).toBe(expected);
    expect(reference(input)).toBe(expected);
  });

  it('removes known secret values', () => {
    expect(scrubSecrets('token tok3n-value leaked', ['tok3n-value'])).toBe('token *** leaked');
    expect(scrubSecrets('abc is too short to be a secret', ['abc', undefined])).toBe('abc is too short to be a secret');
  });

  it('removes each line of a secret of several lines, as output comes line by line (a PEM key, a token read with its newline)', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n';
    const secrets = [pem, 'tok_abcdef123456\n'];
    const printed = `${pem}token: tok_abcdef123456\n`.split('\n').map((line) => scrubLine(line, secrets));
    expect(printed.join('\n')).not.toMatch(/MIIEvQIBADANBgkqhkiG9w0BAQEFAASC|BKcwggSjAgEAAoIBAQC7|tok_abcdef123456/);
    expect(printed).toContain('token: ***');
    // A short line of it (the last of a base64 body) is left: too common to take for the secret.
    expect(scrubSecrets('x=1', ['abc\nx=1\n'])).toBe('x=1');
  });

  it('agrees with the regex on 20,000 random strings of the characters that matter', () => {
    const alphabet = ['a', 'Z', 'h', '1', '_', '+', '.', '-', ':', '/', '/', '@', ' ', '\t', '\n', '\u00a0', '\u00e9', '://', 'http://', 'u:p@'];
    const next = random(16);
    for (let n = 0; n < 20_000; n++) {
      let text = '';
      const length = Math.floor(next() * 24);
      for (let i = 0; i < length; i++) text += alphabet[Math.floor(next() * alphabet.length)];
      expect(scrubSecrets(text), JSON.stringify(text)).toBe(reference(text));
    }
  });

  // Each of these took the old regex time quadratic in its length (a 40 KB `a-a-…` line: 0.9 s; 400 KB: minutes).
  it.each([
    ['a-a-a-… with no newline', 'a-'.repeat(2 * MB)],
    ['a-a-a-… with a newline every 80 characters', `${'a-'.repeat(39)}a\n`.repeat(Math.floor((4 * MB) / 80))],
    ['a.b.c.… ending in ://', `${'a.'.repeat(2 * MB)}://`],
    ['x://x://x://…', 'x://'.repeat(MB)],
    ['http:// and a 4 MB user name with no @', `http://${'u'.repeat(4 * MB)}`],
    ['http://u: and a 4 MB password with no @', `http://u:${'p'.repeat(4 * MB)}`],
    ['a://a:a://a:…', 'a://a:'.repeat(700_000)],
  ])('scans 4 MB of %s in linear time', (_name, text) => {
    const ms = timed(() => scrubSecrets(text, ['hunter22-secret']));
    expect(ms).toBeLessThan(1000);
  });
});

describe('cutLine', () => {
  it('leaves a line within the limit as it is', () => {
    expect(cutLine('short')).toBe('short');
    const exact = 'x'.repeat(MAX_LINE_BYTES);
    expect(cutLine(exact)).toBe(exact);
  });

  it('cuts a longer line to the limit and says how long it was', () => {
    const line = 'y'.repeat(412_345);
    const cut = cutLine(line);
    expect(cut).toBe(`${'y'.repeat(MAX_LINE_BYTES)}… [line cut: 412,345 bytes]`);
  });

  it('counts bytes, not characters, and never splits a character', () => {
    const line = '\u00e9'.repeat(10_000) + '\u{1F600}'.repeat(10);
    const cut = cutLine(line, 1001);
    const kept = cut.slice(0, cut.indexOf('…'));
    expect(kept).toBe('\u00e9'.repeat(500));
    expect(cut).toBe(`${kept}… [line cut: ${(20_000 + 40).toLocaleString('en-US')} bytes]`);
  });

  it('cutting a cut line again keeps the size of the original', () => {
    const once = cutLine('z'.repeat(100_000), 50_000);
    expect(cutLine(once)).toBe(`${'z'.repeat(MAX_LINE_BYTES)}… [line cut: 100,000 bytes]`);
    expect(cutLine(once, 50_000)).toBe(once);
  });

  it('cuts a 16 MB line in linear time', () => {
    const line = Buffer.alloc(16 * MB, 'a-').toString('latin1');
    expect(timed(() => cutLine(line))).toBeLessThan(500);
  });
});

describe('scrubLine', () => {
  it('scrubs a secret that straddles the cut, instead of keeping half of it', () => {
    const secret = 'S3cr3t-token-value';
    const line = `${'x'.repeat(MAX_LINE_BYTES - 5)}${secret} and more`;
    const out = scrubLine(line, [secret]);
    expect(out).not.toContain('S3cr3');
    expect(out.startsWith(`${'x'.repeat(MAX_LINE_BYTES - 5)}***`)).toBe(true);
    expect(out).toMatch(/… \[line cut: [\d,]+ bytes\]$/);
    // Cut first and the password's start would stay: ` https://bob:hun` is what fits.
    const url = `${'x'.repeat(MAX_LINE_BYTES - 16)} https://bob:hunter22@host/`;
    expect(scrubLine(url)).not.toContain(':hun');
  });
});
