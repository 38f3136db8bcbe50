

/** Where the CLI writes; a seam so tests and the git hook can capture it. */
export interface Terminal {
  out(text: string): void;
  err(text: string): void;
  /** True when stdout is a terminal: spinners and colour; else plain lines. */
  readonly interactive: boolean;
  /** Resolves once what was written has been taken by the reader (or the reader is gone): a long log is written a page at a time. */
  drained?(): Promise<void>;
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

/**
 * A value as `--json` prints it: pretty JSON whose DEL and C1 characters
 * (which JSON.stringify leaves raw, and a committer can put in a job's
 * error or message) are escaped, so the document stays whole through
 * safeForTerminal, which would otherwise drop them or take U+009D for the
 * start of a sequence and cut the rest.
 */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const line = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);
const coloursOn = (stream: NodeJS.WriteStream) => Boolean(stream.isTTY) && process.env.TERM !== 'dumb' && !process.env.NO_COLOR;

export const processTerminal: Terminal = {
  out: (text) => void process.stdout.write(line(safeForTerminal(text, coloursOn(process.stdout)))),
  err: (text) => void process.stderr.write(line(safeForTerminal(text, coloursOn(process.stderr)))),
  // Both: the spinner draws on stderr above lines written to stdout (`2>file` at a terminal gets plain step lines).
  interactive: Boolean(process.stdout.isTTY) && Boolean(process.stderr.isTTY) && process.env.TERM !== 'dumb' && !process.env.CI,
  // `slipway logs -f | less` reads at its own pace: a long log waits for it rather than piling up in memory.
  drained: async () => {
    for (const stream of [process.stdout, process.stderr]) {
      if (stream.writableNeedDrain && !stream.destroyed) await new Promise<void>((resolve) => {
        const done = () => {
          stream.off('drain', done);
          stream.off('close', done);
          stream.off('error', done);
          resolve();
        };
        stream.on('drain', done).on('close', done).on('error', done);
      });
    }
  },
};

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * One status line that redraws in place on a terminal; on anything else
 * each change of text is printed once as a plain line.
 */
export class Spinner {
  private frame = 0;
  private text = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly terminal: Terminal, private readonly stream: NodeJS.WriteStream = process.stderr) {}

  update(text: string): void {
    if (text === this.text) return;
    this.text = text;
    if (!this.terminal.interactive) {
      this.terminal.err(text);
      return;
    }
    if (!this.timer) this.timer = setInterval(() => this.draw(), 80);
    this.draw();
  }

  /** Prints a line above the spinner without garbling it. */
  above(line: string): void {
    if (!this.terminal.interactive || !this.timer) {
      this.terminal.out(line);
      return;
    }
    this.stream.write('\r\x1b[2K');
    this.terminal.out(line);
    this.draw();
  }

  private draw(): void {
    this.frame = (this.frame + 1) % FRAMES.length;
    this.stream.write(`\r\x1b[2K${FRAMES[this.frame]} ${safeForTerminal(this.text, false)}`);
  }

  stop(final?: string): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.stream.write('\r\x1b[2K');
    }
    if (final) this.terminal.err(final);
  }
}

/** "3.2 s", "4 m 05 s", "2 h 10 m": short, for tables and progress lines. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} m`;
}

/** "5 s ago", "3 m ago", "2 d ago". */
export function age(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export const short = (sha: string | null | undefined) => (sha ? sha.slice(0, 12) : '-');

/** A plain-text table: columns padded to their widest cell. */
export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string>>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
