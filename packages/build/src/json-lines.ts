/**
 * Newline-delimited JSON from a byte stream (Docker's progress streams),
 * objects split across chunks reassembled. A line that is not JSON comes
 * back as `{ stream: line }`, so nothing Docker says is lost.
 */
export async function* jsonLines<T extends object>(source: AsyncIterable<Buffer | string>): AsyncGenerator<T | { stream: string }> {
  let buffered = '';
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
  for await (const chunk of source) {
    buffered += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const event = parse(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
      if (event) yield event;
    }
  }
  const last = parse(buffered);
  if (last) yield last;
}
