/** One run of equally styled text in a rendered terminal line. */
export interface TermRun {
  text: string;
  /** Space-separated classes: `a-b` bold, `a-d` dim, `a-i` italic, `a-u` underline, `a-s` strike, `a-f<n>`/`a-g<n>` palette colours 0-15, `a-fbg`/`a-gfg` the log's own colours swapped (inverse). */
  classes: string;
  /** A 256-colour or true-colour foreground/background (`#rrggbb`), beyond the 16-colour palette. */
  color?: string;
  background?: string;
}

interface Style {
  fg: number | string | null;
  bg: number | string | null;
  bold: boolean;
  dim: boolean;
  italic: boolean;
  underline: boolean;
  strike: boolean;
  inverse: boolean;
}

/**
 * The right edge for cursor moves: `ESC[<n>G` and `ESC[<n>C` stop here, as
 * a terminal's cursor stops at its right margin. A log line is the build's
 * output, so `ESC[999999999G` must not fill a billion cells. Text written
 * past the edge still shows: a long line is never cut.
 */
export const MAX_COLUMNS = 10_000;
/** Cells a line may pad or erase per character of its own (plus two screen widths) before far cursor moves and erasures are ignored. */
const WORK_PER_CHAR = 4;

const PLAIN: Style = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, strike: false, inverse: false };
const SPECIAL = /[\u0000-\u0008\u000b-\u001f\u007f]/;

/**
 * How a terminal would show one log line: ANSI SGR colours and styles
 * applied, carriage returns and backspaces moving the cursor so a progress
 * bar redrawn with `\r` shows only its last state, erase-in-line and
 * cursor-column sequences honoured (up to {@link MAX_COLUMNS}), every other
 * control sequence dropped. Plain lines (the vast majority) take a fast path.
 * The work is linear in the line's length: a line whose codes would pad or
 * erase more cells than its budget (a screen-wide line redrawn over and
 * over) keeps its text and colours, but from then on text goes on where
 * the line ends rather than far to the right, and erasing to the left is
 * ignored.
 */
export function renderTerminalLine(raw: string): TermRun[] {
  if (!SPECIAL.test(raw)) return raw.length ? [{ text: raw, classes: '' }] : [];
  const cells: string[] = [];
  const styles: Style[] = [];
  let style = PLAIN;
  let col = 0;
  // Cells padded or erased so far are paid from here, so no sequence of codes makes the work quadratic.
  let budget = WORK_PER_CHAR * raw.length + 2 * MAX_COLUMNS;
  const afford = (work: number): boolean => {
    if (work > budget) return false;
    budget -= work;
    return true;
  };
  const put = (ch: string) => {
    if (col > cells.length && !afford(col - cells.length)) col = cells.length;
    while (cells.length < col) {
      cells.push(' ');
      styles.push(PLAIN);
    }
    cells[col] = ch;
    styles[col] = style;
    col += 1;
  };
  for (let i = 0; i < raw.length; i++) {
    const code = raw.charCodeAt(i);
    if (code === 0x1b) {
      const next = raw[i + 1];
      if (next === '[') {
        let j = i + 2;
        while (j < raw.length && !(raw.charCodeAt(j) >= 0x40 && raw.charCodeAt(j) <= 0x7e)) j++;
        const params = raw.slice(i + 2, j);
        const final = raw[j];
        i = j;
        if (final === 'm') style = applySgr(style, params);
        else if (final === 'K') {
          const mode = firstNumber(params, 0);
          if (mode === 0) {
            cells.length = Math.min(cells.length, col);
            styles.length = cells.length;
          } else if (mode === 2) {
            cells.length = styles.length = 0;
          } else if (mode === 1 && afford(Math.min(col + 1, cells.length))) {
            for (let k = 0; k < Math.min(col + 1, cells.length); k++) {
              cells[k] = ' ';
              styles[k] = PLAIN;
            }
          }
        } else if (final === 'G') col = Math.max(1, Math.min(MAX_COLUMNS, firstNumber(params, 1))) - 1;
        else if (final === 'C') col = Math.max(col, Math.min(MAX_COLUMNS - 1, col + Math.max(1, firstNumber(params, 1))));
        else if (final === 'D') col = Math.max(0, col - Math.max(1, firstNumber(params, 1)));
      } else if (next === ']') {
        // OSC (titles, hyperlinks): skip to BEL or ESC \.
        let j = i + 2;
        while (j < raw.length && raw.charCodeAt(j) !== 0x07 && !(raw.charCodeAt(j) === 0x1b && raw[j + 1] === '\\')) j++;
        i = raw.charCodeAt(j) === 0x07 ? j : j + 1;
      } else {
        i += 1;
      }
    } else if (code === 0x0d) {
      col = 0;
    } else if (code === 0x08) {
      col = Math.max(0, col - 1);
    } else if (code === 0x09) {
      put('\t');
    } else if (code < 0x20 || code === 0x7f) {
      // Other control characters show nothing.
    } else if (code >= 0xd800 && code <= 0xdbff && i + 1 < raw.length) {
      put(raw.slice(i, i + 2));
      i += 1;
    } else {
      put(raw[i]!);
    }
  }
  const runs: TermRun[] = [];
  let current: Style | null = null;
  let text = '';
  for (let k = 0; k < cells.length; k++) {
    const s = styles[k] ?? PLAIN;
    if (current === null) current = s;
    else if (!sameStyle(s, current)) {
      runs.push(toRun(text, current));
      text = '';
      current = s;
    }
    text += cells[k];
  }
  if (current !== null && text) runs.push(toRun(text, current));
  return runs;
}

/** The line's visible text, as a terminal would show it (what search looks in). */
export function terminalText(raw: string): string {
  if (!SPECIAL.test(raw)) return raw;
  return renderTerminalLine(raw).map((r) => r.text).join('');
}

/** The first numeric parameter of a CSI sequence (`5;3` → 5), capped so arithmetic on it stays exact; `fallback` when there is none. */
function firstNumber(params: string, fallback: number): number {
  const digits = /^\d+/.exec(params);
  return digits === null ? fallback : Math.min(Number(digits[0]), 1e9);
}

function applySgr(style: Style, params: string): Style {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((p) => (p === '' ? 0 : Number(p)));
  const s = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]!;
    if (c === 0) Object.assign(s, PLAIN);
    else if (c === 1) s.bold = true;
    else if (c === 2) s.dim = true;
    else if (c === 3) s.italic = true;
    else if (c === 4) s.underline = true;
    else if (c === 7) s.inverse = true;
    else if (c === 9) s.strike = true;
    else if (c === 22) s.bold = s.dim = false;
    else if (c === 23) s.italic = false;
    else if (c === 24) s.underline = false;
    else if (c === 27) s.inverse = false;
    else if (c === 29) s.strike = false;
    else if (c >= 30 && c <= 37) s.fg = c - 30;
    else if (c === 39) s.fg = null;
    else if (c >= 40 && c <= 47) s.bg = c - 40;
    else if (c === 49) s.bg = null;
    else if (c >= 90 && c <= 97) s.fg = c - 90 + 8;
    else if (c >= 100 && c <= 107) s.bg = c - 100 + 8;
    else if (c === 38 || c === 48) {
      const [color, used] = extendedColor(codes, i + 1);
      i += used;
      if (color !== undefined) {
        if (c === 38) s.fg = color;
        else s.bg = color;
      }
    }
  }
  return s;
}

/** `5;n` (256 colours) or `2;r;g;b` after a 38/48; returns the colour and how many codes it used. */
function extendedColor(codes: number[], at: number): [number | string | undefined, number] {
  if (codes[at] === 5) {
    const n = codes[at + 1];
    if (n === undefined || n < 0 || n > 255) return [undefined, 2];
    return [n < 16 ? n : palette256(n), 2];
  }
  if (codes[at] === 2) {
    const [r, g, b] = [codes[at + 1], codes[at + 2], codes[at + 3]].map((v) => Math.max(0, Math.min(255, v ?? 0)));
    return [hex(r!, g!, b!), 4];
  }
  return [undefined, 0];
}

function palette256(n: number): string {
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return hex(v, v, v);
  }
  const i = n - 16;
  const level = (x: number) => (x === 0 ? 0 : 55 + x * 40);
  return hex(level(Math.floor(i / 36)), level(Math.floor(i / 6) % 6), level(i % 6));
}

function hex(r: number, g: number, b: number): string {
  return `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

function sameStyle(a: Style, b: Style): boolean {
  return a === b || (a.fg === b.fg && a.bg === b.bg && a.bold === b.bold && a.dim === b.dim && a.italic === b.italic
    && a.underline === b.underline && a.strike === b.strike && a.inverse === b.inverse);
}

function toRun(text: string, s: Style): TermRun {
  const classes: string[] = [];
  if (s.bold) classes.push('a-b');
  if (s.dim) classes.push('a-d');
  if (s.italic) classes.push('a-i');
  if (s.underline) classes.push('a-u');
  if (s.strike) classes.push('a-s');
  const run: TermRun = { text, classes: '' };
  // Inverse swaps the colours; a default one swaps in as the log's own (`a-fbg`: background as text colour, `a-gfg` the reverse).
  const fg = s.inverse ? (s.bg ?? 'bg') : s.fg;
  const bg = s.inverse ? (s.fg ?? 'fg') : s.bg;
  if (typeof fg === 'number') classes.push(`a-f${fg}`);
  else if (fg === 'bg') classes.push('a-fbg');
  else if (typeof fg === 'string') run.color = fg;
  if (typeof bg === 'number') classes.push(`a-g${bg}`);
  else if (bg === 'fg') classes.push('a-gfg');
  else if (typeof bg === 'string') run.background = bg;
  run.classes = classes.join(' ');
  return run;
}
