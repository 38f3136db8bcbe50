import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { scanJsonFields, type JsonScan, type WantedFields } from './json-field-scan.js';
import type { Provider } from './forge-address.js';
import { repositoryIdentity, scanRepositoryIdentity } from './webhook-body.js';

const wanted: WantedFields = { containers: ['repository', 'project'], fields: ['full_name', 'clone_url'], maxLength: 10 };
const scan = (text: string): JsonScan => scanJsonFields(Buffer.from(text), wanted);
const found = (text: string) => {
  const result = scan(text);
  if (result.kind !== 'object') return result.kind;
  return Object.fromEntries([...result.containers].map(([k, v]) => [k, v === null ? null : Object.fromEntries(v)]));
};

describe('scanJsonFields', () => {
  it.each([
    ['the wanted fields of the wanted containers', '{"repository":{"full_name":"a/b","clone_url":"u","x":1},"other":{"full_name":"no"}}', { repository: { full_name: 'a/b', clone_url: 'u' } }],
    ['fields of the object after an empty container are not its', '{"repository":{},"a":{"full_name":"no"},"b":[{"full_name":"no"}]}', { repository: {} }],
    ['fields of a nested object are not the container\'s', '{"repository":{"owner":{"full_name":"no"}},"a":{"repository":{"full_name":"no"}}}', { repository: {} }],
    ['a container that is not an object', '{"repository":"a/b","project":[{"full_name":"x"}]}', { repository: null, project: null }],
    ['a field that is not a string', '{"repository":{"full_name":1,"clone_url":{"a":"b"}}}', { repository: { full_name: null, clone_url: null } }],
    ['a string longer than maxLength (10)', '{"repository":{"full_name":"0123456789","clone_url":"0123456789a"}}', { repository: { full_name: '0123456789', clone_url: null } }],
    ['escapes decoded in values', '{"repository":{"full_name":"a\\/b\\u00e9\\"\\n"}}', { repository: { full_name: 'a/bé"\n' } }],
    ['escapes decoded in keys', '{"rep\\u006fsitory":{"full\\u005fname":"a/b"}}', { repository: { full_name: 'a/b' } }],
    ['an escaped key that is not wanted', '{"rep\\u006fsitorx":{"full_name":"a/b"}}', {}],
    ['the last of duplicate containers wins', '{"repository":{"full_name":"a/b"},"repository":{"clone_url":"u"}}', { repository: { clone_url: 'u' } }],
    ['the last of duplicate fields wins', '{"repository":{"full_name":"a/b","full_name":2}}', { repository: { full_name: null } }],
    ['a container replaced by a scalar', '{"repository":{"full_name":"a/b"},"repository":null}', { repository: null }],
    ['whitespace everywhere', ' \t\r\n{ "repository" :\n{ "full_name" : "a/b" } , "x" : [ 1 , { } ] }\n ', { repository: { full_name: 'a/b' } }],
    ['unicode characters', '{"repository":{"full_name":"ü/😀"},"ü":"😀"}', { repository: { full_name: 'ü/😀' } }],
    ['a value that starts with a byte order mark keeps it, as JSON.parse does', '{"repository":{"full_name":"\ufeffa/b"}}', { repository: { full_name: '\ufeffa/b' } }],
    ['every kind of value', '{"a":[true,false,null,0,-0,1.5,-2e10,3E+2,4e-1,"s",[],{}],"repository":{}}', { repository: {} }],
  ])('%s', (_name, text, expected) => {
    expect(found(text)).toEqual(expected);
  });

  it.each([
    ['[]', 'not_object'], ['"x"', 'not_object'], ['1', 'not_object'], ['null', 'not_object'], ['[{"repository":{}}]', 'not_object'],
    ['', 'invalid'], [' ', 'invalid'], ['{', 'invalid'], ['{}}', 'invalid'], ['{"a":1,}', 'invalid'], ['{"a" 1}', 'invalid'], ['{a:1}', 'invalid'],
    ['{"a":01}', 'invalid'], ['{"a":1.}', 'invalid'], ['{"a":.1}', 'invalid'], ['{"a":1e}', 'invalid'], ['{"a":+1}', 'invalid'], ['{"a":-}', 'invalid'],
    ['{"a":tru}', 'invalid'], ['{"a":nulls}', 'invalid'], ['{"a":"\\x"}', 'invalid'], ['{"a":"\\u12G4"}', 'invalid'], ['{"a":"\t"}', 'invalid'],
    ['{"a":"x}', 'invalid'], ['{"a":[1,2}', 'invalid'], ['{"a":{]}', 'invalid'], ['{"a":1} {}', 'invalid'], ['\ufeff{}', 'invalid'], ['{"a":\'x\'}', 'invalid'],
    ['[,]', 'invalid'], ['[1,]', 'invalid'], ['{,}', 'invalid'], ['{"a":1,,"b":2}', 'invalid'], ['{"a":NaN}', 'invalid'], ['{"a":Infinity}', 'invalid'],
  ])('%j is %s, as JSON.parse says', (text, kind) => {
    expect(scan(text).kind).toBe(kind);
    expect(parseKind(text)).toBe(kind);
  });

  it('reads strings four bytes at a time and still stops exactly where JSON.parse does (5000 random strings)', () => {
    const rnd = prng(0xfeed);
    const CHARS = ['a', 'b', '/', ' ', 'é', '😀', '"', '\\', '\\"', '\\u0041', '\\n', '\\x', '\u0000', '\u001f', '\t', '\n', '\u007f', '\u0080'];
    for (let n = 0; n < 5000; n++) {
      const value = Array.from({ length: rnd.int(24) }, () => CHARS[rnd.int(CHARS.length)]).join('');
      const text = `{"${'p'.repeat(rnd.int(8))}":1,"repository":{"full_name":"${value}"}}`;
      const kind = parseKind(text);
      expect(scan(text).kind, JSON.stringify(text)).toBe(kind);
      if (kind === 'object') {
        const name = (JSON.parse(text) as { repository: { full_name: string } }).repository.full_name;
        expect(found(text), JSON.stringify(text)).toEqual({ repository: { full_name: name.length <= 10 ? name : null } });
      }
    }
  });

  it('walks nesting far deeper than a recursive parser could, with one bit per level', () => {
    const depth = 1_000_000;
    expect(found(`{"a":${'['.repeat(depth)}${']'.repeat(depth)},"repository":{"full_name":"a/b"}}`)).toEqual({ repository: { full_name: 'a/b' } });
    expect(scan(`{"a":${'['.repeat(depth)}${']'.repeat(depth - 1)}}`).kind).toBe('invalid');
    expect(scan(`{"a":${'{"b":'.repeat(depth)}1${'}'.repeat(depth)}}`).kind).toBe('object');
  });
});

/** What JSON.parse makes of a text: the scan's kinds. */
function parseKind(text: string): JsonScan['kind'] {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? 'object' : 'not_object';
  } catch {
    return 'invalid';
  }
}

/** mulberry32: seeded, so a failure can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { int: (n: number) => Math.floor(next() * n), chance: (p: number) => next() < p };
}

interface Definition { name: string; examples: Array<Record<string, unknown>> }
const definitions = createRequire(import.meta.url)('@octokit/webhooks-examples') as Definition[];
const docs = (name: string) => JSON.parse(readFileSync(new URL(`../../../apps/receiver/test/fixtures/${name}.json`, import.meta.url), 'utf8')) as Record<string, unknown>;

describe('scanRepositoryIdentity agrees with repositoryIdentity of the parsed body', () => {
  const payloads: Array<[Provider, Record<string, unknown>]> = [
    ...definitions.flatMap((d) => d.examples.map((e) => ['github', e] as [Provider, Record<string, unknown>])),
    ['gitea', docs('gitea-push')], ['gitlab', docs('gitlab-push')], ['gitlab', docs('gitlab-tag-push')],
  ];

  it(`on every payload of @octokit/webhooks-examples and the forges' documentation (${payloads.length})`, () => {
    for (const [provider, payload] of payloads) {
      const text = JSON.stringify(payload);
      expect(scanRepositoryIdentity(provider, Buffer.from(text))).toEqual({ kind: 'object', identity: repositoryIdentity(provider, payload) });
    }
  });

  it('on 3000 mangled bodies: the same verdict (not JSON, not an object, the same repository)', () => {
    const rnd = prng(0x5ca1ab1e);
    const PIECES = ['{', '}', '[', ']', ',', ':', '"', '\\', '\\u0072', '\\"', ' ', '\n', '0', '-', '1e5', 'true', 'nul', '"repository"', '"project"', '"full_name"', '"clone_url"', '"path_with_namespace"', '"x"', '"é"', '\t', '\u0001'];
    let agreedOnObjects = 0;
    for (let n = 0; n < 3000; n++) {
      const [provider, payload] = payloads[rnd.int(payloads.length)]!;
      let text = JSON.stringify(rnd.chance(0.5) ? { repository: payload.repository, project: payload.project, x: 1 } : payload);
      for (let edits = 1 + rnd.int(3); edits > 0; edits--) {
        const at = rnd.int(text.length + 1);
        const cut = rnd.chance(0.5) ? rnd.int(4) : 0;
        text = text.slice(0, at) + (rnd.chance(0.8) ? PIECES[rnd.int(PIECES.length)] : '') + text.slice(at + cut);
      }
      const scanned = scanRepositoryIdentity(provider, Buffer.from(text));
      const kind = parseKind(text);
      expect(scanned.kind, text).toBe(kind);
      if (kind === 'object' && scanned.kind === 'object') {
        expect(scanned.identity, text).toEqual(repositoryIdentity(provider, JSON.parse(text) as Record<string, unknown>));
        agreedOnObjects++;
      }
    }
    // The mangling kept enough bodies valid for the comparison of identities to mean something.
    expect(agreedOnObjects).toBeGreaterThan(300);
  });
});
