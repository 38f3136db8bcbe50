import type { Terminal } from './terminal.js';

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
    this.stream.write(`\r\x1b[2K${FRAMES[this.frame]} ${this.text}`);
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
