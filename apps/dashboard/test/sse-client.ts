export interface SseMessage {
  id: string | undefined;
  event: string;
  data: string;
}

/**
 * Reads a Server-Sent Events response the way a browser does (fields per
 * the spec; CR, LF and CRLF all end lines), message by message.
 */
export async function* sseMessages(res: Response): AsyncGenerator<SseMessage> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let message: { id?: string; event?: string; data: string[] } = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(buffer);
      if (!match) break;
      // A lone CR at the end of a chunk may be the first half of CRLF.
      if (match[0] === '\r' && match.index === buffer.length - 1) break;
      const line = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      if (line === '') {
        if (message.data.length > 0 || message.event) yield { id: message.id, event: message.event ?? 'message', data: message.data.join('\n') };
        message = { data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const val = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') message.data.push(val);
      else if (field === 'event') message.event = val;
      else if (field === 'id') message.id = val;
    }
  }
}
