/**
 * Reads a few string fields of a JSON document without building it.
 *
 * A webhook body is untrusted until its signature is checked, and which
 * secret checks it depends on the repository the body names. `JSON.parse`
 * would build the whole document to read two levels of it: 25 MB of nested
 * empty objects cost ~560 MB of heap that way. This scanner walks the bytes
 * once, accepting exactly what `JSON.parse` accepts, and keeps only the
 * wanted strings: it allocates nothing per skipped value, and one bit per
 * open container (nesting is not limited, so a document `JSON.parse` takes
 * is never refused here).
 */

/** Which fields to read: `fields` of the objects at the top-level keys `containers`. */
export interface WantedFields {
  containers: readonly string[];
  fields: readonly string[];
  /** Longer strings (in UTF-16 units, as `String.length` counts) are read as null. */
  maxLength: number;
}

/**
 * Per wanted container present at the top level: null when its value is not
 * an object, else its wanted fields that are present, each a string or null
 * (not a string, or longer than `maxLength`). Duplicate keys: the last one
 * wins, as with `JSON.parse`.
 */
export type ScannedContainers = Map<string, Map<string, string | null> | null>;

export type JsonScan =
  | { kind: 'invalid' }
  /** Valid JSON whose top level is not an object. */
  | { kind: 'not_object' }
  | { kind: 'object'; containers: ScannedContainers };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

const INVALID: JsonScan = { kind: 'invalid' };
const NOT_OBJECT: JsonScan = { kind: 'not_object' };
// ignoreBOM: a value that starts with U+FEFF keeps it, as JSON.parse keeps it (the default decoder would strip it).
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * Scans `bytes`, which must be valid UTF-8 (check with `isUtf8` first:
 * bytes of multi-byte characters inside strings are not looked at).
 *
 * One function with its state in locals, not an object with methods: this
 * loop runs once per byte of structure, and 25 MB of it took 2.5 times as
 * long with the state in fields.
 */
export function scanJsonFields(bytes: Uint8Array, wanted: WantedFields): JsonScan {
  const n = bytes.length;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const names = encodedNames(wanted);
  const found: ScannedContainers = new Map();
  /** One bit per open container, 1 for an object: the nesting, without a limit. */
  let stack = new Uint32Array(8);
  let depth = 0;
  /** At depth 1: the wanted container the coming value belongs to, else -1. */
  let pendingContainer = -1;
  /** At depth 2, inside a wanted container: the wanted field the coming value belongs to, else -1. */
  let pendingField = -1;
  /** The wanted container whose object is open at depth 2, else null. */
  let current: Map<string, string | null> | null = null;
  /** A key comes next (after `{` or, in an object, after `,`), then its value. */
  let expectKey = false;

  let i = skipSpace(bytes, 0, n);
  const rootIsObject = i < n && bytes[i] === LBRACE;
  for (;;) {
    if (expectKey) {
      expectKey = false;
      if (i >= n || bytes[i] !== QUOTE) return INVALID;
      const end = skipString(bytes, view, i, n);
      if (end < 0) return INVALID;
      if (depth === 1) pendingContainer = matchName(bytes, i, end, names.containers, wanted.containers, names.maxKeyBytes);
      else if (depth === 2 && current !== null) pendingField = matchName(bytes, i, end, names.fields, wanted.fields, names.maxKeyBytes);
      i = skipSpace(bytes, end, n);
      if (i >= n || bytes[i] !== COLON) return INVALID;
      i = skipSpace(bytes, i + 1, n);
    }
    // A value starts at i.
    if (i >= n) return INVALID;
    const b = bytes[i]!;
    if (b === LBRACE || b === LBRACKET) {
      const isObject = b === LBRACE;
      if (depth === 1) {
        current = pendingContainer >= 0 && isObject ? new Map() : null;
        if (pendingContainer >= 0) found.set(wanted.containers[pendingContainer]!, current);
      } else if (depth === 2 && current !== null && pendingField >= 0) {
        current.set(wanted.fields[pendingField]!, null);
      }
      const word = depth >>> 5;
      if (word >= stack.length) {
        const grown = new Uint32Array(stack.length * 2);
        grown.set(stack);
        stack = grown;
      }
      stack[word] = isObject ? stack[word]! | (1 << (depth & 31)) : stack[word]! & ~(1 << (depth & 31));
      depth++;
      i = skipSpace(bytes, i + 1, n);
      if (i >= n || bytes[i] !== (isObject ? RBRACE : RBRACKET)) {
        expectKey = isObject;
        continue;
      }
      // Empty: closed at once.
      i++;
      depth--;
      if (depth === 1) current = null;
    } else {
      let end: number;
      if (b === QUOTE) end = skipString(bytes, view, i, n);
      else if (b === 0x74) end = literal(bytes, i, n, TRUE);
      else if (b === 0x66) end = literal(bytes, i, n, FALSE);
      else if (b === 0x6e) end = literal(bytes, i, n, NULL);
      else end = skipNumber(bytes, i, n);
      if (end < 0) return INVALID;
      if (depth === 1 && pendingContainer >= 0) {
        found.set(wanted.containers[pendingContainer]!, null);
      } else if (depth === 2 && current !== null && pendingField >= 0) {
        current.set(wanted.fields[pendingField]!, b === QUOTE ? stringValue(bytes, i, end, wanted.maxLength) : null);
      }
      i = end;
    }
    // After a value: close containers, or go on to the next member.
    for (;;) {
      i = skipSpace(bytes, i, n);
      if (depth === 0) {
        if (i !== n) return INVALID;
        return rootIsObject ? { kind: 'object', containers: found } : NOT_OBJECT;
      }
      if (i >= n) return INVALID;
      const c = bytes[i]!;
      const inObject = ((stack[(depth - 1) >>> 5]! >>> ((depth - 1) & 31)) & 1) === 1;
      if (c === COMMA) {
        i = skipSpace(bytes, i + 1, n);
        expectKey = inObject;
        break;
      }
      if (c !== (inObject ? RBRACE : RBRACKET)) return INVALID;
      i++;
      depth--;
      if (depth === 1) current = null;
    }
  }
}

/** Which of `names` the string at [start, end) (quotes included) is, or -1. */
function matchName(bytes: Uint8Array, start: number, end: number, names: readonly Uint8Array[], texts: readonly string[], maxKeyBytes: number): number {
  const length = end - start - 2;
  if (length > maxKeyBytes) return -1;
  if (lastStringEscaped) return texts.indexOf(decodeString(bytes, start, end));
  outer: for (let k = 0; k < names.length; k++) {
    const name = names[k]!;
    if (name.length !== length) continue;
    for (let j = 0; j < length; j++) if (bytes[start + 1 + j] !== name[j]) continue outer;
    return k;
  }
  return -1;
}

/** The string at [start, end), quotes included, or null when it is longer than `maxLength`. */
function stringValue(bytes: Uint8Array, start: number, end: number, maxLength: number): string | null {
  // Each UTF-16 unit takes at most 6 bytes: a longer string cannot be short enough.
  if (end - start - 2 > 6 * maxLength) return null;
  const text = lastStringEscaped ? decodeString(bytes, start, end) : utf8.decode(bytes.subarray(start + 1, end - 1));
  return text.length <= maxLength ? text : null;
}

/** The string at [start, end), quotes included, decoded exactly as `JSON.parse` would. */
function decodeString(bytes: Uint8Array, start: number, end: number): string {
  return JSON.parse(utf8.decode(bytes.subarray(start, end))) as string;
}

const encoded = new WeakMap<WantedFields, { containers: Uint8Array[]; fields: Uint8Array[]; maxKeyBytes: number }>();

/** The wanted names as bytes, once per `WantedFields` object (a receiver scans every request with the same few). */
function encodedNames(wanted: WantedFields) {
  let names = encoded.get(wanted);
  if (names === undefined) {
    const encoder = new TextEncoder();
    names = {
      containers: wanted.containers.map((name) => encoder.encode(name)),
      fields: wanted.fields.map((name) => encoder.encode(name)),
      // A character is at most 6 bytes as an escape (\uXXXX).
      maxKeyBytes: 6 * Math.max(0, ...wanted.containers.map((s) => s.length), ...wanted.fields.map((s) => s.length)),
    };
    encoded.set(wanted, names);
  }
  return names;
}

const TRUE = new TextEncoder().encode('true');
const FALSE = new TextEncoder().encode('false');
const NULL = new TextEncoder().encode('null');

/** JSON's whitespace: space, tab, line feed, carriage return. */
function skipSpace(bytes: Uint8Array, i: number, n: number): number {
  while (i < n) {
    const c = bytes[i]!;
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  return i;
}

/** Whether the last string skipString went over had an escape: its bytes are then not its text. */
let lastStringEscaped = false;

/** The string whose opening quote is at `i`: the index after its closing quote, or -1. */
function skipString(bytes: Uint8Array, view: DataView, i: number, n: number): number {
  i++;
  lastStringEscaped = false;
  for (;;) {
    // The common case first: plain characters up to the next quote, backslash or control
    // character, four at a time (byte at a time, this loop was 40 % of a scan).
    while (i + 8 <= n && (stringStops(view.getUint32(i, true)) | stringStops(view.getUint32(i + 4, true))) === 0) i += 8;
    if (i + 4 <= n && stringStops(view.getUint32(i, true)) === 0) i += 4;
    while (i < n) {
      const c = bytes[i]!;
      if (c === QUOTE || c === BACKSLASH || c < 0x20) break;
      i++;
    }
    if (i >= n) return -1;
    const c = bytes[i]!;
    if (c === QUOTE) return i + 1;
    if (c < 0x20) return -1;
    // A backslash: one of \" \\ \/ \b \f \n \r \t, or \u and four hex digits.
    lastStringEscaped = true;
    if (i + 1 >= n) return -1;
    const e = bytes[i + 1]!;
    if (e === 0x75) {
      if (i + 5 >= n || !isHex(bytes[i + 2]!) || !isHex(bytes[i + 3]!) || !isHex(bytes[i + 4]!) || !isHex(bytes[i + 5]!)) return -1;
      i += 6;
    } else if (e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
      i += 2;
    } else {
      return -1;
    }
  }
}

/**
 * Non-zero when any of the four bytes of `w` is a quote, a backslash or
 * below 0x20 (the classic "has a zero byte" and "has a byte less than"
 * tests, exact as yes/no answers).
 */
function stringStops(w: number): number {
  const quote = w ^ 0x22222222;
  const backslash = w ^ 0x5c5c5c5c;
  return (((quote - 0x01010101) & ~quote) | ((backslash - 0x01010101) & ~backslash) | ((w - 0x20202020) & ~w)) & 0x80808080;
}

function isHex(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function isDigit(bytes: Uint8Array, i: number, n: number): boolean {
  return i < n && bytes[i]! >= ZERO && bytes[i]! <= NINE;
}

/** `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` at `i`: the index after it, or -1. */
function skipNumber(bytes: Uint8Array, i: number, n: number): number {
  if (bytes[i] === MINUS) i++;
  if (!isDigit(bytes, i, n)) return -1;
  if (bytes[i] === ZERO) i++;
  else while (isDigit(bytes, i, n)) i++;
  if (i < n && bytes[i] === DOT) {
    i++;
    if (!isDigit(bytes, i, n)) return -1;
    while (isDigit(bytes, i, n)) i++;
  }
  if (i < n && (bytes[i] === 0x65 || bytes[i] === 0x45)) {
    i++;
    if (i < n && (bytes[i] === PLUS || bytes[i] === MINUS)) i++;
    if (!isDigit(bytes, i, n)) return -1;
    while (isDigit(bytes, i, n)) i++;
  }
  return i;
}

function literal(bytes: Uint8Array, i: number, n: number, word: Uint8Array): number {
  if (i + word.length > n) return -1;
  for (let j = 0; j < word.length; j++) if (bytes[i + j] !== word[j]) return -1;
  return i + word.length;
}
