import { markCut, SCRUB_WINDOW_BYTES, scrubLine } from '@slipway/core/logger';
import { BuildError, type FailedStep } from './build-error.js';

/** One JSON message of Docker's `/build` stream. */
export interface BuildEvent {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  error?: string;
  errorDetail?: { code?: number; message?: string };
  aux?: { ID?: string };
}

export interface BuildStep extends FailedStep {
  /** Docker reused a cached layer for it (` ---> Using cache`). */
  cached: boolean;
}

export interface BuildStreamOptions {
  /**
   * Each line of output as it arrives: colour codes removed, secrets
   * scrubbed, cut to `MAX_LINE_BYTES` (16 KB) with a marker naming its size.
   */
  onLine?: (line: string) => void;
  /** Values scrubbed from every line and from the error (besides URL credentials, always scrubbed). */
  secrets?: readonly (string | undefined)[];
  /** Each step as it starts. */
  onStep?: (step: Readonly<BuildStep>) => void;
  /** Output lines of the failing step kept in the error. Default {@link DEFAULT_TAIL_LINES}. */
  tailLines?: number;
}

export const DEFAULT_TAIL_LINES = 20;
const MAX_INSTRUCTION = 160;

const STEP = /^Step (\d+)\/(\d+) : (.*)$/;
const BOUNDARY = /^(Step \d+\/\d+ : | ---> |Removing intermediate container |Successfully (built|tagged) )/;
const CHATTER = /^( ---> |Removing intermediate container |Successfully (built|tagged) )/;
const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;
const LINE_BREAK = /\r?\n|\r/g;
const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

/**
 * Reads Docker's (classic builder) build stream: turns it into log lines,
 * follows the steps, counts cached ones, and catches the error Docker
 * reports inside the stream — whose HTTP response still ends with 200.
 * Pure: fed events, no IO; the one place Docker's strings are read.
 *
 * Whatever the build prints costs time linear in its size and bounded
 * memory: of a line still open only its first `SCRUB_WINDOW_BYTES` are
 * kept (the rest is counted), and no pattern is run on more than that.
 */
export class BuildStream {
  readonly steps: BuildStep[] = [];
  totalSteps = 0;
  imageId: string | undefined;
  error: string | undefined;
  /** Docker said the image was built (`Successfully built` or an `aux.ID`). */
  finished = false;
  /** The line still open: its start, and the number of bytes of it dropped past the window. */
  private partial = '';
  private partialDropped = 0;
  private output: string[] = [];
  private readonly tail: number;

  constructor(private readonly options: BuildStreamOptions = {}) {
    this.tail = options.tailLines ?? DEFAULT_TAIL_LINES;
  }

  get cachedSteps(): number {
    return this.steps.filter((step) => step.cached).length;
  }

  get currentStep(): BuildStep | undefined {
    return this.steps[this.steps.length - 1];
  }

  push(event: BuildEvent): void {
    if (typeof event.stream === 'string') this.text(event.stream);
    if (event.aux?.ID) {
      this.imageId = event.aux.ID;
      this.finished = true;
    }
    if (typeof event.status === 'string' && event.progress === undefined) {
      this.line(event.id ? `${event.id}: ${event.status}` : event.status);
    }
    if (event.error !== undefined || event.errorDetail?.message !== undefined) {
      this.flush();
      const lines = (event.errorDetail?.message ?? event.error ?? 'unknown error').replace(ANSI, '').split('\n').map((line) => this.clean(line));
      this.error ??= lines.join('\n');
      for (const line of lines) if (line.trim()) this.emit(line);
    }
  }

  /** The stream ended: a last line without its newline is still a line. */
  end(): void {
    this.flush();
  }

  /** The failure Docker reported, as a {@link BuildError} whose first line names the step; null when none. */
  failure(): BuildError | null {
    if (this.error === undefined) return null;
    const message = this.error;
    const code = /returned a non-zero code: (\d+)/.exec(message)?.[1] ?? /exit code: (\d+)/.exec(message)?.[1];
    const exitCode = code === undefined ? undefined : Number(code);
    const step = this.currentStep;
    const reason = message.split('\n', 1)[0]!.trim();
    const output = this.output.slice(-this.tail);
    if (!step) return new BuildError(`docker build failed: ${reason}`, { output });
    const instruction = step.instruction.length > MAX_INSTRUCTION ? `${step.instruction.slice(0, MAX_INSTRUCTION - 1)}…` : step.instruction;
    const head = `Step ${step.index}/${step.total} : ${instruction} failed${exitCode === undefined ? `: ${reason}` : ` (exit ${exitCode})`}`;
    const failed: FailedStep = { index: step.index, total: step.total, instruction: step.instruction };
    return new BuildError([head, ...output].join('\n'), { step: failed, exitCode, output });
  }

  private text(chunk: string): void {
    const clean = chunk.replace(ANSI, '');
    if ((this.partial || this.partialDropped) && BOUNDARY.test(clean)) this.flush();
    let start = 0;
    for (const lineBreak of clean.matchAll(LINE_BREAK)) {
      this.append(clean.slice(start, lineBreak.index));
      this.flush();
      start = lineBreak.index + lineBreak[0].length;
    }
    this.append(clean.slice(start));
  }

  /** Adds to the open line: its start up to the window, the rest only counted. */
  private append(text: string): void {
    if (!text) return;
    const room = this.partialDropped > 0 ? 0 : SCRUB_WINDOW_BYTES - this.partial.length;
    if (text.length <= room) {
      this.partial += text;
      return;
    }
    let keep = room;
    if (keep > 0 && isHighSurrogate(text.charCodeAt(keep - 1))) keep--;
    this.partial += text.slice(0, keep);
    this.partialDropped += Buffer.byteLength(keep > 0 ? text.slice(keep) : text);
  }

  private flush(): void {
    const rest = this.partial;
    const dropped = this.partialDropped;
    this.partial = '';
    this.partialDropped = 0;
    if (dropped > 0) this.line(markCut(rest, Buffer.byteLength(rest) + dropped));
    else if (rest) this.line(rest);
  }

  /** A line as it may be shown: scrubbed and cut. */
  private clean(raw: string): string {
    return scrubLine(raw, this.options.secrets).trimEnd();
  }

  private line(raw: string): void {
    const line = this.clean(raw);
    if (!line.trim()) return;
    const step = STEP.exec(line);
    if (step) {
      const next: BuildStep = { index: Number(step[1]), total: Number(step[2]), instruction: step[3]!.trim(), cached: false };
      this.steps.push(next);
      this.totalSteps = next.total;
      this.output = [];
      this.options.onStep?.(next);
    } else if (line === ' ---> Using cache') {
      if (this.currentStep) this.currentStep.cached = true;
    } else if (line.startsWith('Successfully built ')) {
      this.finished = true;
    } else if (!CHATTER.test(line)) {
      this.output.push(line);
      if (this.output.length > this.tail * 4) this.output.splice(0, this.output.length - this.tail);
    }
    this.emit(line);
  }

  private emit(line: string): void {
    this.options.onLine?.(line);
  }
}
