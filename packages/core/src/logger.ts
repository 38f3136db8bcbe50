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
  const destination = pino.destination({ dest: 1, sync: false, minLength: 4096, maxLength: LOG_BUFFER_MAX_BYTES });
  // A quiet process must not hold its last lines back: write out what waits twice a second.
  setInterval(() => destination.flush(), BUFFERED_FLUSH_MS).unref();
  return pino(config, destination);
}

/** How long a buffered logger holds lines at most. */
export const BUFFERED_FLUSH_MS = 500;

/**
 * What a buffered logger holds while its output does not drain (journald or
 * a log driver blocking stdout): past this, lines are dropped rather than
 * held in memory, one per webhook, for as long as the stall lasts.
 */
export const LOG_BUFFER_MAX_BYTES = 16 * 1024 * 1024;

/** Writes out what a buffered logger still holds (before exiting). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => logger.flush(() => resolve()));
}

/** Longest line of output (UTF-8 bytes) a log keeps; the rest of a longer line is dropped with a {@link cutLine} marker. */
export const MAX_LINE_BYTES = 16 * 1024;

/**
 * How much of a long line {@link scrubLine} reads: {@link MAX_LINE_BYTES}
 * and some slack, so that a secret or URL password straddling the final
 * cut is recognised whole rather than half kept. Whoever assembles lines
 * from a stream need keep no more of one than this.
 */
export const SCRUB_WINDOW_BYTES = MAX_LINE_BYTES + 4096;

const CUT_MARK = '… [line cut: ';
const CUT_MARK_END = ' bytes]';
const encoder = new TextEncoder();

/** The size a {@link cutLine} marker at the end of `text` names, and where the marker starts; null when there is none. */
function cutMarker(text: string): { at: number; bytes: number } | null {
  if (!text.endsWith(CUT_MARK_END)) return null;
  const at = text.lastIndexOf(CUT_MARK);
  if (at < 0) return null;
  const digits = text.slice(at + CUT_MARK.length, text.length - CUT_MARK_END.length);
  return /^\d[\d,]*$/.test(digits) ? { at, bytes: Number(digits.replace(/,/g, '')) } : null;
}

/**
 * Cuts a line to at most `maxBytes` UTF-8 bytes (whole characters) and
 * says so at its end: `… [line cut: 412,345 bytes]`, the size of the line as
 * it was printed (`originalBytes` when the caller knows it better; a line
 * cut before keeps the size its marker names). Linear in the line's length,
 * and cheap for short lines: run it before anything else reads a line.
 */
export function cutLine(line: string, maxBytes = MAX_LINE_BYTES, originalBytes?: number): string {
  // A UTF-16 code unit is at most 3 UTF-8 bytes.
  if (line.length * 3 <= maxBytes) return line;
  const marker = cutMarker(line);
  const content = marker ? line.slice(0, marker.at) : line;
  if (content.length * 3 <= maxBytes) return line;
  const bytes = Buffer.byteLength(content);
  if (bytes <= maxBytes) return line;
  const { read } = encoder.encodeInto(content, new Uint8Array(maxBytes));
  return markCut(content.slice(0, read), marker?.bytes ?? Math.max(originalBytes ?? 0, bytes));
}

/** `kept`, the start of a line of `originalBytes` whose rest was dropped, with the {@link cutLine} marker. */
export function markCut(kept: string, originalBytes: number): string {
  return `${kept}${CUT_MARK}${originalBytes.toLocaleString('en-US')}${CUT_MARK_END}`;
}

// Character classes of the URL-credential pattern, as JavaScript's regex engine
// sees them without the `u` flag: \w and [a-z] with `i` are ASCII only, \s is Unicode white space.
const isLetter = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
const isDigit = (c: number) => c >= 48 && c <= 57;
const isWord = (c: number) => isLetter(c) || isDigit(c) || c === 95;
const isSchemeChar = (c: number) => isLetter(c) || isDigit(c) || c === 43 || c === 45 || c === 46;
const isSpace = (c: number) => (c >= 9 && c <= 13) || c === 32 || c === 160 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a)
  || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
const SLASH = 47;
const AT = 64;

/**
 * Replaces the credentials of every `scheme://user[:password]@` in `text`
 * with `***`, exactly as `/(\b[a-z][a-z0-9+.-]*:\/\/)[^\s/]+@/gi` would, in
 * one pass: the user info runs to the last `@` before the next `/` or white
 * space, so that a password holding an `@` (`redis://:Xk9@pQ2@host`) or no
 * user at all (`redis://:secret@host`) is hidden whole. That regex
 * backtracks: its time grows with the square of a line like `a-a-a-…` (a
 * 400 KB line held the event loop for minutes).
 * Here each `://` is found with indexOf, the scheme before it is walked back
 * no further than the previous `://`, and the user info after it stops at
 * the next `/`, which every later `://` begins with: each character is read
 * a bounded number of times.
 */
function scrubUrlCredentials(text: string): string {
  let out = '';
  let copied = 0;
  let from = 0;
  for (;;) {
    const sep = text.indexOf('://', from);
    if (sep < 0) break;
    from = sep + 1;
    // The scheme: the leftmost letter at a word boundary in the run of scheme characters before `://`.
    let start = sep;
    while (start > copied && isSchemeChar(text.charCodeAt(start - 1))) start--;
    let scheme = -1;
    for (let i = start; i < sep; i++) {
      if (isLetter(text.charCodeAt(i)) && (i === 0 || !isWord(text.charCodeAt(i - 1)))) {
        scheme = i;
        break;
      }
    }
    if (scheme < 0) continue;
    // The user info: up to the last `@` before a `/` or white space.
    let i = sep + 3;
    let at = -1;
    for (let c = text.charCodeAt(i); i < text.length && !isSpace(c) && c !== SLASH; c = text.charCodeAt(++i)) {
      if (c === AT) at = i;
    }
    if (at <= sep + 3) continue;
    out += `${text.slice(copied, sep + 3)}***@`;
    copied = at + 1;
    from = copied;
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/** Environment variable names whose values are taken for secrets (scrubbed from logs): `NPM_TOKEN`, `DATABASE_URL`, `API_KEY`… */
export const SECRET_ENV_NAME = /SECRET|TOKEN|PASSWORD|PASSWD|PASS|KEY|CREDENTIAL|DSN|DATABASE_URL|AUTH/i;

/** The values of an environment's secret-like variables (see {@link SECRET_ENV_NAME}), to scrub. */
export function secretEnvValues(env: Readonly<Record<string, string>>): string[] {
  return Object.entries(env).filter(([name]) => SECRET_ENV_NAME.test(name)).map(([, value]) => value);
}

/**
 * Scrubs known secret values and URL credentials from free text (git error
 * output, build logs) before it is stored or printed. Linear in the text's
 * length, whatever it holds.
 */
export function scrubSecrets(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = scrubUrlCredentials(text);
  for (const piece of piecesOf(secrets)) out = out.split(piece).join('***');
  return out;
}

/** A line of a secret of several lines shorter than this is too common to scrub (`-----`, `}`). */
const MIN_SECRET_LINE = 8;
const secretPieces = new WeakMap<readonly (string | undefined)[], readonly string[]>();

/**
 * What to scrub for `secrets`: each one whole (4 characters at least), and
 * each line of one that holds a line break (a PEM key, a token read from a
 * file with its newline). Output reaches the scrubber line by line, so a
 * secret of several lines is never seen whole. Longest first: a line of a
 * secret must not cut another secret it is part of.
 */
function piecesOf(secrets: readonly (string | undefined)[]): readonly string[] {
  let pieces = secretPieces.get(secrets);
  if (!pieces) {
    const all = new Set<string>();
    for (const secret of secrets) {
      if (!secret) continue;
      if (secret.length >= 4) all.add(secret);
      if (!/[\r\n]/.test(secret)) continue;
      for (const line of secret.split(/\r?\n|\r/)) {
        if (line.trim().length >= MIN_SECRET_LINE) all.add(line.trim());
      }
    }
    pieces = [...all].sort((a, b) => b.length - a.length);
    secretPieces.set(secrets, pieces);
  }
  return pieces;
}

/**
 * One line of output on its way into a log: cut to {@link MAX_LINE_BYTES}
 * (with a marker naming its size) and scrubbed. A long line is cut roughly
 * first, scrubbed, then cut exactly, so that nothing scans more than a
 * bounded part of it and a secret at the cut is not half kept.
 */
export function scrubLine(line: string, secrets: readonly (string | undefined)[] = []): string {
  if (line.length * 3 <= MAX_LINE_BYTES) return scrubSecrets(line, secrets);
  const rough = cutLine(line, SCRUB_WINDOW_BYTES);
  const original = rough === line && !cutMarker(line) ? Buffer.byteLength(line) : undefined;
  return cutLine(scrubSecrets(rough, secrets), MAX_LINE_BYTES, original);
}
