/** Where the CLI writes; a seam so tests and the git hook can capture it. */
export interface Terminal {
  out(text: string): void;
  err(text: string): void;
  /** True when stdout is a terminal: spinners and colour; else plain lines. */
  readonly interactive: boolean;
}

const ESC = 0x1b;
/** C1 controls a terminal may take as ESC + a letter: CSI (0x9b), OSC (0x9d), DCS (0x90), SOS, PM, APC, ST. */
const C1_CSI = 0x9b;
const C1_STRING_STARTS = new Set([0x90, 0x98, 0x9d, 0x9e, 0x9f]);
const C1_ST = 0x9c;
const BEL = 0x07;

/**
 * Text from a job's log (what a build printed) made safe to write to the
 * operator's terminal: every escape and control sequence is removed (OSC
 * 52 would write the clipboard, OSC 0 set the title, DCS and cursor moves
 * rewrite the screen), except, when `keepColours`, SGR colour sequences
 * (`ESC[…m`). Tabs and newlines stay; other C0 and C1 controls go. One pass,
 * linear in the length of the text: a hostile line cannot make it slow.
 */
export function safeForTerminal(text: string, keepColours: boolean): string {
  let out = '';
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    const escaped = c === ESC && i + 1 < n;
    const next = escaped ? text.charCodeAt(i + 1) : -1;
    if (c === C1_CSI || (escaped && next === 0x5b /* [ */)) {
      // CSI: parameters 0x30-0x3f, intermediates 0x20-0x2f, one final byte 0x40-0x7e.
      let j = i + (c === C1_CSI ? 1 : 2);
      while (j < n && text.charCodeAt(j) >= 0x30 && text.charCodeAt(j) <= 0x3f) j++;
      while (j < n && text.charCodeAt(j) >= 0x20 && text.charCodeAt(j) <= 0x2f) j++;
      const final = j < n ? text.charCodeAt(j) : -1;
      const end = final >= 0x40 && final <= 0x7e ? j + 1 : j;
      if (keepColours && final === 0x6d /* m */ && c === ESC && /^\x1b\[[0-9;:]*m$/.test(text.slice(i, end))) out += text.slice(i, end);
      i = end;
    } else if (C1_STRING_STARTS.has(c) || (escaped && (next === 0x5d || next === 0x50 || next === 0x58 || next === 0x5e || next === 0x5f))) {
      // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \ or 0x9c), or to the end of the text.
      let j = i + (c === ESC ? 2 : 1);
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === BEL || d === C1_ST) {
          j++;
          break;
        }
        if (d === ESC && j + 1 < n && text.charCodeAt(j + 1) === 0x5c /* \ */) {
          j += 2;
          break;
        }
        j++;
      }
      i = j;
    } else if (c === ESC) {
      // Any other escape: ESC and the one character it introduces (ESC c resets the terminal).
      i += escaped ? 2 : 1;
    } else if ((c < 0x20 && c !== 0x09 && c !== 0x0a) || c === 0x7f || (c >= 0x80 && c <= 0x9f)) {
      i++;
    } else {
      let j = i + 1;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d < 0x20 || (d >= 0x7f && d <= 0x9f)) break;
        j++;
      }
      out += text.slice(i, j);
      i = j;
    }
  }
  return out;
}

const line = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);
const coloursOn = (stream: NodeJS.WriteStream) => Boolean(stream.isTTY) && process.env.TERM !== 'dumb' && !process.env.NO_COLOR;

export const processTerminal: Terminal = {
  out: (text) => void process.stdout.write(line(safeForTerminal(text, coloursOn(process.stdout)))),
  err: (text) => void process.stderr.write(line(safeForTerminal(text, coloursOn(process.stderr)))),
  interactive: Boolean(process.stdout.isTTY) && process.env.TERM !== 'dumb' && !process.env.CI,
};
