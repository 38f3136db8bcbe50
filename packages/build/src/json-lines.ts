import { StringDecoder } from 'node:string_decoder';
import { setImmediate as nextTurn } from 'node:timers/promises';

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
