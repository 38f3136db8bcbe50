import { Writable } from 'node:stream';
import { createLogger, type Logger } from '@slipway/core/logger';

/** A logger whose lines are kept, parsed, for assertions (and a search for leaked secrets). */
export function captureLogger(): { logger: Logger; lines: Array<Record<string, unknown>>; text: () => string } {
  let text = '';
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ name: 'test', level: 'debug', destination }), lines, text: () => text };
}
