/** Where the CLI writes; a seam so tests and the git hook can capture it. */
export interface Terminal {
  out(text: string): void;
  err(text: string): void;
  /** True when stdout is a terminal: spinners and colour; else plain lines. */
  readonly interactive: boolean;
}

export const processTerminal: Terminal = {
  out: (text) => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => void process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
  interactive: Boolean(process.stdout.isTTY) && process.env.TERM !== 'dumb' && !process.env.CI,
};
