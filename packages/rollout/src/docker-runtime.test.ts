import { describe, expect, it } from 'vitest';
import { demux } from './docker-runtime.js';
import { parseReleaseRecord } from './release-record.js';

const frame = (stream: number, text: string) => {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
};

describe('demux', () => {
  it('joins stdout and stderr frames in order', () => {
    expect(demux(Buffer.concat([frame(1, 'starting v1\n'), frame(2, 'fatal: cannot open database\n')]))).toBe('starting v1\nfatal: cannot open database\n');
  });
  it('passes TTY output through', () => expect(demux(Buffer.from('plain text\n'))).toBe('plain text\n'));
});

describe('parseReleaseRecord', () => {
  it.each([
    [JSON.stringify({ sha: 'a'.repeat(40), image: 'i', job: '1', at: 't' }), true],
    [JSON.stringify({ sha: null, image: 'i', job: '1', at: 't' }), true],
    [JSON.stringify({ sha: 'nope', image: 'i', job: '1', at: 't' }), false],
    ['{', false], [null, false],
  ])('%s → %s', (text, ok) => expect(parseReleaseRecord(text) !== null).toBe(ok));
});
