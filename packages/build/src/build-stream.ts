import { StringDecoder } from 'node:string_decoder';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { markCut, SCRUB_WINDOW_BYTES, scrubLine } from '@slipway/core/logger';
import type { UnavailableError } from '@slipway/core/slipway-error';
import { hostFailure } from '@slipway/core/docker';
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
  /** The step running now; earlier ones are only counted (a build can print any number of `Step n/m :` lines). */
  currentStep: BuildStep | undefined;
  totalSteps = 0;
  /** Steps Docker took from its cache. */
  cachedSteps = 0;
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

  /**
   * The failure Docker reported, as a {@link BuildError} whose first line
   * names the step, or, when the host, its network or a registry failed
   * rather than a step (see hostFailure), an UnavailableError saying the
   * same; null when none.
   */
  failure(): BuildError | UnavailableError | null {
    if (this.error === undefined) return null;
    const message = this.error;
    const code = /returned a non-zero code: (\d+)/.exec(message)?.[1] ?? /exit code: (\d+)/.exec(message)?.[1];
    const exitCode = code === undefined ? undefined : Number(code);
    const step = this.currentStep;
    const reason = message.split('\n', 1)[0]!.trim();
    const output = this.output.slice(-this.tail);
    const notTheCommit = (head: string) => (exitCode === undefined ? hostFailure(head) : null);
    if (!step) return notTheCommit(`docker build failed: ${reason}`) ?? new BuildError(`docker build failed: ${reason}`, { output });
    const instruction = step.instruction.length > MAX_INSTRUCTION ? `${step.instruction.slice(0, MAX_INSTRUCTION - 1)}…` : step.instruction;
    const head = `Step ${step.index}/${step.total} : ${instruction} failed${exitCode === undefined ? `: ${reason}` : ` (exit ${exitCode})`}`;
    const host = notTheCommit(head);
    if (host) return host;
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
      this.currentStep = next;
      this.totalSteps = next.total;
      this.output = [];
      this.options.onStep?.(next);
    } else if (line === ' ---> Using cache') {
      if (this.currentStep && !this.currentStep.cached) {
        this.currentStep.cached = true;
        this.cachedSteps++;
      }
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

/**
 * Longest message read whole (bytes as received). Docker's build messages
 * are one read of the build's output each (32 KB at most, a few times that
 * once JSON-escaped); a longer one is left out, so that no stream can make
 * the reader hold more than this.
 */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * Bytes read between two turns of the event loop. A stream's async
 * iterator hands over whatever is buffered without one (a consumer that
 * fell behind a build flooding its output gets megabytes at once); read in
 * one go, with the consumer's work on each message, that held the loop for
 * tens of milliseconds. 16 KB of short lines cost the worker about a
 * millisecond.
 */
const TURN_BYTES = 16 * 1024;

/**
 * Newline-delimited JSON from a byte stream (Docker's progress streams),
 * objects split across chunks reassembled (and characters split across
 * chunks decoded whole). A line that is not JSON comes back as
 * `{ stream: line }`, so nothing Docker says is lost; a line longer than
 * `maxMessageBytes` comes back as a `stream` notice saying it was left out.
 * Time is linear in the stream's length: each chunk is searched for
 * newlines once, and a partial line is joined only once it is complete.
 * Every {@link TURN_BYTES} it waits for a turn of the event loop: the
 * consumer's work on what that many bytes hold is all that ever runs at once.
 */
export async function* jsonLines<T extends object>(
  source: AsyncIterable<Buffer | string>,
  options: { maxMessageBytes?: number } = {},
): AsyncGenerator<T | { stream: string }> {
  const max = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const decoder = new StringDecoder('utf8');
  let parts: string[] = [];
  let size = 0;
  let dropped = 0;
  const parse = (line: string): T | { stream: string } | null => {
    const text = line.trim();
    if (!text) return null;
    try {
      const value: unknown = JSON.parse(text);
      return value !== null && typeof value === 'object' ? (value as T) : { stream: `${text}\n` };
    } catch {
      return { stream: `${text}\n` };
    }
  };
  const add = (piece: string) => {
    if (!piece) return;
    if (dropped === 0 && size + piece.length <= max) {
      parts.push(piece);
      size += piece.length;
      return;
    }
    dropped += (dropped === 0 ? Buffer.byteLength(parts.join('')) : 0) + Buffer.byteLength(piece);
    parts = [];
    size = 0;
  };
  const take = (): T | { stream: string } | null => {
    const line = parts.join('');
    const skipped = dropped;
    parts = [];
    size = 0;
    dropped = 0;
    return skipped > 0 ? { stream: `[a message of ${skipped.toLocaleString('en-US')} bytes from Docker was left out]\n` } : parse(line);
  };
  let budget = TURN_BYTES;
  for await (const chunk of source) {
    for (let offset = 0; offset < chunk.length; offset += TURN_BYTES) {
      if (budget <= 0) {
        await nextTurn();
        budget = TURN_BYTES;
      }
      const slice = chunk.slice(offset, offset + TURN_BYTES);
      budget -= slice.length;
      const text = typeof slice === 'string' ? slice : decoder.write(slice);
      let start = 0;
      let newline: number;
      while ((newline = text.indexOf('\n', start)) >= 0) {
        add(text.slice(start, newline));
        start = newline + 1;
        const event = take();
        if (event) yield event;
      }
      add(text.slice(start));
    }
  }
  add(decoder.end());
  const last = take();
  if (last) yield last;
}
