import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Field names whose values never reach a log line: at the top of a line,
 * one level down, or in logged headers. pino's redaction works on paths,
 * and every path costs time on every line, so deeper nestings are not
 * spelled out: nothing in Slipway logs secrets-bearing objects that deep
 * (request headers and bodies are never logged at all).
 */
const SECRET_KEYS = [
  'secret', 'token', 'password', 'signature', 'authorization', 'cookie',
  'x-hub-signature', 'x-hub-signature-256', 'x-gitea-signature', 'x-gogs-signature',
  'x-forgejo-signature', 'x-gitlab-token',
];
const REDACT_PATHS = SECRET_KEYS.flatMap((key) => [`["${key}"]`, `*["${key}"]`, `req.headers["${key}"]`]);

export interface CreateLoggerOptions {
  name: string;
  /** Default: `$LOG_LEVEL`-free `info`; main.ts passes the environment's choice. */
  level?: string;
  /** Where lines go. Default: stdout. */
  destination?: NodeJS.WritableStream;
  /**
   * Buffer lines and write them to stdout asynchronously, in batches of at
   * least 4 KB or every {@link BUFFERED_FLUSH_MS}: fewer system calls on a
   * hot path. Call `flushLogger` before exiting. Default false (every line
   * written at once).
   */
  buffered?: boolean;
  base?: Record<string, unknown>;
}

export function createLogger(options: CreateLoggerOptions): Logger {
  const config: LoggerOptions = {
    name: options.name,
    level: options.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid, ...options.base },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (options.destination) return pino(config, options.destination as pino.DestinationStream);
  if (!options.buffered) return pino(config);
  const destination = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  // A quiet process must not hold its last lines back: write out what waits twice a second.
  setInterval(() => destination.flush(), BUFFERED_FLUSH_MS).unref();
  return pino(config, destination);
}

/** How long a buffered logger holds lines at most. */
export const BUFFERED_FLUSH_MS = 500;

/** Writes out what a buffered logger still holds (before exiting). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => logger.flush(() => resolve()));
}

/**
 * Scrubs known secret values and URL credentials from free text (git error
 * output, build logs) before it is stored or printed.
 */
export function scrubSecrets(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+(?::[^\s/@]*)?@/gi, '$1***@');
  for (const secret of secrets) {
    if (secret && secret.length >= 4) out = out.split(secret).join('***');
  }
  return out;
}
