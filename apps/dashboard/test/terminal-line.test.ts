import { describe, expect, it } from 'vitest';
import { MAX_COLUMNS, renderTerminalLine, terminalText } from '../src/web/terminal-line.js';

const ESC = '\x1b';

describe('renderTerminalLine: what a terminal would show', () => {
  const cases: Array<[string, string, string]> = [
    ['plain text stays as it is', 'hello world', 'hello world'],
    ['empty line', '', ''],
    ['a carriage return redraws the line: the last state shows', 'Downloading 10%\rDownloading 55%\rDownloading 100%', 'Downloading 100%'],
    ['a shorter redraw leaves the rest, as a terminal does', 'abcdef\rxy', 'xycdef'],
    ['a trailing carriage return changes nothing', 'done 100%\r', 'done 100%'],
    ['erase to end of line after a carriage return', `50% [=====     ]\r${ESC}[K100%`, '100%'],
    ['erase the whole line, then write from the cursor', `old text${ESC}[2K\rnew`, 'new'],
    ['backspaces move back and overwrite (a spinner)', 'working |\b/\b-\b\\', 'working \\'],
    ['cursor to column 1', `abc${ESC}[1Gxy`, 'xyc'],
    ['cursor forward pads with spaces', `a${ESC}[3Cb`, 'a   b'],
    ['cursor back, then overwrite', `abcd${ESC}[2Dx`, 'abxd'],
    ['a cursor-column code with extra parameters uses the first, as xterm does', `abc${ESC}[2;9Gx`, 'axc'],
    ['colour codes are not text', `${ESC}[1;31merror${ESC}[0m: oops`, 'error: oops'],
    ['OSC hyperlinks show only their text', `${ESC}]8;;https://example.com${ESC}\\link${ESC}]8;;${ESC}\\ here`, 'link here'],
    ['window titles (OSC with BEL) vanish', `${ESC}]0;title\x07text`, 'text'],
    ['other control characters show nothing', 'a\x00b\x07c', 'abc'],
    ['tabs stay', 'a\tb', 'a\tb'],
    ['astral characters are one cell', '🚀 launch\r🎉', '🎉 launch'],
  ];
  it.each(cases)('%s', (_name, raw, shown) => {
    expect(terminalText(raw)).toBe(shown);
  });

  it('applies SGR styles and colours, and resets them', () => {
    expect(renderTerminalLine(`${ESC}[31mred${ESC}[0m plain ${ESC}[1;4;92mbold bright green${ESC}[22m not bold`)).toEqual([
      { text: 'red', classes: 'a-f1' },
      { text: ' plain ', classes: '' },
      { text: 'bold bright green', classes: 'a-b a-u a-f10' },
      { text: ' not bold', classes: 'a-u a-f10' },
    ]);
  });

  it('handles 256 colours and true colour, foreground and background', () => {
    expect(renderTerminalLine(`${ESC}[38;5;208mo${ESC}[48;5;4mb${ESC}[38;2;1;2;3mt${ESC}[39;49m`)).toEqual([
      { text: 'o', classes: '', color: '#ff8700' },
      { text: 'b', classes: 'a-g4', color: '#ff8700' },
      { text: 't', classes: 'a-g4', color: '#010203' },
    ]);
    expect(renderTerminalLine(`${ESC}[38;5;250mgrey`)).toEqual([{ text: 'grey', classes: '', color: '#bcbcbc' }]);
  });

  it('inverse swaps colours, the default ones included', () => {
    expect(renderTerminalLine(`${ESC}[7mrev${ESC}[27m ${ESC}[31;7mred-bg`)).toEqual([
      { text: 'rev', classes: 'a-fbg a-gfg' },
      { text: ' ', classes: '' },
      { text: 'red-bg', classes: 'a-fbg a-g1' },
    ]);
  });

  it('keeps the style of each cell when a redraw overwrites part of a line', () => {
    expect(renderTerminalLine(`${ESC}[32mgreen text${ESC}[0m\r${ESC}[31mRED`)).toEqual([
      { text: 'RED', classes: 'a-f1' },
      { text: 'en text', classes: 'a-f2' },
    ]);
  });

  it('survives malformed sequences without throwing', () => {
    for (const raw of [`${ESC}`, `${ESC}[`, `${ESC}[38;5m`, `${ESC}[38;2;1m`, `${ESC}]unterminated`, `${ESC}[999999999Cx`.slice(0, 8)]) {
      expect(() => renderTerminalLine(raw)).not.toThrow();
    }
  });

  // A log line is data from the build: a number in a cursor code must not make the tab fill a billion cells.
  it.each([
    ['cursor to column 999,999,999', `${ESC}[999999999Gx`],
    ['cursor forward 999,999,999', `${ESC}[999999999Cx`],
    ['cursor forward past the edge, twice', `a${ESC}[9999999Cb${ESC}[9999999Cc`],
  ])('clamps huge cursor moves to %s at the right edge (%#)', (_name, raw) => {
    const started = performance.now();
    const text = terminalText(raw);
    // A billion cells would take seconds and gigabytes; a clamped move, microseconds (the bound is for a loaded machine).
    expect(performance.now() - started).toBeLessThan(1000);
    expect(text.length).toBeLessThanOrEqual(MAX_COLUMNS + raw.length);
    expect(text.endsWith('x') || text.endsWith('c')).toBe(true);
  });

  it('stays linear in the line length however its codes move and erase: a 1 MB line of screen-wide redraws renders about as fast as 1 MB of ordinary ones', () => {
    const oneMegabyte = (redraw: string) => `${'w'.repeat(MAX_COLUMNS)}${redraw.repeat(Math.ceil(1_000_000 / redraw.length))}`;
    // The best of three: one run can lose a second to a collection or a neighbour on these two cores (CI saw 992 ms
    // against 131), and a quadratic render of these lines (~10^9 column steps) would take tens of seconds, not 10×.
    const timed = (raw: string) => {
      let best = { ms: Infinity, text: '' };
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        const text = terminalText(raw);
        const ms = performance.now() - started;
        if (ms < best.ms) best = { ms, text };
      }
      return best;
    };
    // A progress line redrawn in place, the way builds do; measured on this machine as it is now (the tests share two cores).
    const ordinary = oneMegabyte(`\r${ESC}[K${ESC}[32m55%${ESC}[0m`);
    const baseline = timed(ordinary).ms;
    const redraws = [
      `\r${ESC}[K${ESC}[${MAX_COLUMNS}Gx`, // truncate, then pad out to the edge again
      `\r${ESC}[${MAX_COLUMNS}G${ESC}[1K`, // erase everything left of the edge, again and again
      `${ESC}[${MAX_COLUMNS}Gz${ESC}[2K`, // pad, erase the whole line
    ];
    for (const redraw of redraws) {
      const raw = oneMegabyte(redraw);
      const { ms, text } = timed(raw);
      expect(ms, `${JSON.stringify(redraw)} vs ${Math.round(baseline)} ms for an ordinary line`).toBeLessThan(10 * baseline + 250);
      expect(text.length).toBeLessThanOrEqual(MAX_COLUMNS + raw.length);
    }
  });
});
