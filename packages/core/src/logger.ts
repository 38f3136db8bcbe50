import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Field names whose values never reach a log line, wherever they sit.
 * pino's redaction works on paths, so the common nestings are spelled out.
 */
const SECRET_KEYS = [
  'secret', 'token', 'password', 'signature', 'authorization', 'cookie',
  'x-hub-signature', 'x-hub-signature-256', 'x-gitea-signature', 'x-gogs-signature',
  'x-forgejo-signature', 'x-gitlab-token',
];
const REDACT_PATHS = SECRET_KEYS.flatMap((key) => [
  `["${key}"]`, `*["${key}"]`, `*.*["${key}"]`, `headers["${key}"]`, `req.headers["${key}"]`,
]);

export interface CreateLoggerOptions {
  name: string;
  /** Default: `$LOG_LEVEL`-free `info`; main.ts passes the environment's choice. */
  level?: string;
  /** Where lines go. Default: stdout. */
  destination?: NodeJS.WritableStream;
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
  return options.destination ? pino(config, options.destination as pino.DestinationStream) : pino(config);
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
