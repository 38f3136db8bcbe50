import { describe, expect, it } from 'vitest';
import { jsonText, safeForTerminal } from './terminal.js';

describe('safeForTerminal: a build\'s output on the operator\'s terminal', () => {
  it.each([
    ['OSC 52 clipboard write (BEL)', 'a\x1b]52;c;cm0gLXJmIH4K\x07b', 'ab', 'ab'],
    ['OSC 0 title change (ST)', '\x1b]0;pwned\x1b\\title', 'title', 'title'],
    ['an OSC never terminated', 'x\x1b]8;;http://evil.example/', 'x', 'x'],
    ['C1 OSC and CSI', 'a\u009d0;t\u009cb\u009b2Jc', 'abc', 'abc'],
    ['DCS', '\x1bPq#0;2;0;0;0\x1b\\ok', 'ok', 'ok'],
    ['cursor moves and screen clears', '\x1b[999999999G\x1b[2J\x1b[Hx\x1b[1A', 'x', 'x'],
    ['reset and lone escapes', '\x1bcx\x1b7y\x1b', 'xy', 'xy'],
    ['SGR colours', '\x1b[1;31mred\x1b[0m \x1b[38;5;208mo\x1b[m', 'red o', '\x1b[1;31mred\x1b[0m \x1b[38;5;208mo\x1b[m'],
    ['C0 controls but tabs and newlines', 'a\tb\r\x08c\x00\nd\x7f', 'a\tbc\nd', 'a\tbc\nd'],
    ['plain text, unicode included', 'Step 3/5 : RUN make — ✓', 'Step 3/5 : RUN make — ✓', 'Step 3/5 : RUN make — ✓'],
  ])('%s', (_name, input, plain, coloured) => {
    expect(safeForTerminal(input, false)).toBe(plain);
    expect(safeForTerminal(input, true)).toBe(coloured);
  });

  it('is linear: a megabyte of escapes and of unterminated sequences takes milliseconds', () => {
    for (const unit of ['\x1b[', '\x1b]', '\x1b[31m', '\x1b[1;2;3;4;5;6;7;8;9']) {
      const text = unit.repeat(Math.ceil(1_000_000 / unit.length));
      const started = performance.now();
      safeForTerminal(text, true);
      // A quadratic scan of a megabyte takes minutes; this one, tens of milliseconds (bound generous for a loaded machine).
      expect(performance.now() - started, JSON.stringify(unit)).toBeLessThan(2000);
    }
  });
});

describe('jsonText: --json through the same writer', () => {
  it('stays one whole JSON document whatever a committer put in a job (C1, DEL, escapes), and reads back the same', () => {
    const job = { error: 'step_failed: RUN echo "\u009d" && false \u009b"x\u007f \x1b]52;c;x\x07', message: 'fix\u0085 it ✓' };
    for (const coloured of [false, true]) {
      const printed = safeForTerminal(jsonText(job), coloured);
      expect(JSON.parse(printed)).toEqual(job);
      expect(printed).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    }
  });
});
