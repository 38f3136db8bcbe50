import { SECRET_ENV_NAME } from '@slipway/core/logger';
import { quote } from '@slipway/core/validate';

/**
 * A small schema language: each node parses one value at a key path,
 * reporting errors against that path, and describes itself for the README.
 * Hand-rolled rather than zod so every message reads the same way
 * (`apps.hello.port: expected a port 1-65535, got "x"`) and the reference
 * table can be generated from the very nodes that validate.
 */
export interface ParseContext {
  /** Environment used for `${VAR}` interpolation. */
  env: Readonly<Record<string, string | undefined>>;
  /**
   * Whether strings are `${VAR}`-interpolated. Default true; false for a
   * file a pusher wrote (a repository's `.slipway.yml`), which must not
   * read the environment Slipway runs with.
   */
  interpolate?: boolean;
  /**
   * Collects secret values as they are read: what a `${VAR}` whose name
   * looks like a secret's (`NPM_TOKEN`) put anywhere, and the value of a
   * key whose name does (an `env` or `build_args` entry).
   */
  secretValues?: Set<string>;
  error(path: string, message: string): void;
}

export interface DocRow {
  key: string;
  type: string;
  default: string;
  doc: string;
}

/** Returned by a node that reported an error: the caller keeps going to find more. */
export const INVALID: unique symbol = Symbol('invalid');
export type Parsed<T> = T | typeof INVALID;

export interface Schema<T> {
  /** Human type, for messages and docs: "a port 1-65535". */
  readonly type: string;
  readonly doc: string;
  readonly optional: boolean;
  /** Value when the key is absent; `undefined` means required unless optional. */
  readonly fallback: (() => T) | undefined;
  parse(value: unknown, path: string, ctx: ParseContext): Parsed<T>;
  docs(path: string): DocRow[];
}

interface LeafOptions<T> {
  doc?: string;
  default?: T;
  optional?: boolean;
}

function leaf<T>(type: string, options: LeafOptions<T>, parse: Schema<T>['parse'], shownDefault?: string): Schema<T> {
  const hasDefault = options.default !== undefined;
  const schema: Schema<T> = {
    type,
    doc: options.doc ?? '',
    optional: options.optional ?? false,
    fallback: hasDefault ? () => structuredClone(options.default as T) : undefined,
    parse,
    docs: (path) => [{
      key: path,
      type,
      default: shownDefault ?? (hasDefault ? JSON.stringify(options.default) : options.optional ? '' : 'required'),
      doc: schema.doc,
    }],
  };
  return schema;
}

/**
 * `${VAR}`, `${VAR:-fallback}` and `${VAR:?message}` interpolation; `$$`
 * is a literal `$`. An unset (or empty) variable without a fallback is an
 * error naming it, with the message when one is given (as in a shell).
 */
const REFERENCE = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}/g;

export function interpolate(text: string, path: string, ctx: ParseContext, secret = false): Parsed<string> {
  let failed = false;
  const out = text.replace(REFERENCE, (match, name?: string, kind?: string, word?: string) => {
    if (match === '$$') return '$';
    // Own keys only: `${constructor}` must not read Object.prototype's (a function's text, 16+ characters, passing as a secret).
    const value = Object.hasOwn(ctx.env, name!) ? ctx.env[name!] : undefined;
    if (typeof value === 'string' && value !== '') {
      if (SECRET_ENV_NAME.test(name!)) ctx.secretValues?.add(value);
      return value;
    }
    if (kind === '-') return word!;
    ctx.error(path, `environment variable ${name} is not set${kind === '?' && word ? `: ${word}` : ''}`);
    failed = true;
    return '';
  });
  if (failed) return INVALID;
  if (/\$\{/.test(text.replace(REFERENCE, ''))) {
    ctx.error(path, `malformed \${...} in ${secret ? `a value of ${text.length} characters` : quote(text)}`);
    return INVALID;
  }
  return out;
}

/** Scalars as the user wrote them, after interpolation when they are strings. */
function scalar(value: unknown, path: string, ctx: ParseContext, secret = false): Parsed<unknown> {
  return typeof value === 'string' && ctx.interpolate !== false ? interpolate(value, path, ctx, secret) : value;
}

export function str(options: LeafOptions<string> & {
  type?: string;
  check?: (value: string) => string | null;
  /**
   * A secret: an error names its length, never its value. `by-name`: the
   * value of a variable whose name looks like a secret's (`API_TOKEN`,
   * `DATABASE_URL`; the last key of its path) is one.
   */
  secret?: boolean | 'by-name';
} = {}): Schema<string> {
  const type = options.type ?? 'a string';
  return leaf(type, options, (raw, path, ctx) => {
    const secret = options.secret === 'by-name' ? SECRET_ENV_NAME.test(path.slice(path.lastIndexOf('.') + 1)) : options.secret === true;
    const value = scalar(raw, path, ctx, secret);
    if (value === INVALID) return INVALID;
    if (secret && (typeof value === 'string' || typeof value === 'number')) ctx.secretValues?.add(String(value));
    if (typeof value !== 'string' && typeof value !== 'number') {
      ctx.error(path, `expected ${type}, got ${quote(value)}`);
      return INVALID;
    }
    const text = String(value);
    const problem = options.check?.(text);
    if (problem) {
      const got = secret ? `one of ${text.length} character${text.length === 1 ? '' : 's'}` : quote(text.replace(/(:\/\/)[^/@]*@/, '$1***@'));
      ctx.error(path, `expected ${type}, got ${got}${problem === 'invalid' || (secret && problem.includes(text)) ? '' : ` (${problem})`}`);
      return INVALID;
    }
    return text;
  });
}

export function num(options: LeafOptions<number> & { min: number; max: number; integer?: boolean; type?: string }): Schema<number> {
  const type = options.type ?? `${options.integer ? 'an integer' : 'a number'} ${options.min}-${options.max}`;
  return leaf(type, options, (raw, path, ctx) => {
    const value = scalar(raw, path, ctx);
    if (value === INVALID) return INVALID;
    const n = typeof value === 'number' ? value : typeof value === 'string' && /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(value.trim()) ? Number(value) : NaN;
    if (!Number.isFinite(n) || n < options.min || n > options.max || (options.integer && !Number.isInteger(n))) {
      ctx.error(path, `expected ${type}, got ${quote(value)}`);
      return INVALID;
    }
    return n;
  });
}

export const port = (options: LeafOptions<number> = {}) =>
  num({ ...options, min: 1, max: 65535, integer: true, type: 'a port 1-65535' });

export function oneOf<const T extends string>(values: readonly T[], options: LeafOptions<T> = {}): Schema<T> {
  const type = `one of ${values.join(', ')}`;
  return leaf(type, options, (raw, path, ctx) => {
    const value = scalar(raw, path, ctx);
    if (value === INVALID) return INVALID;
    if (!values.includes(value as T)) {
      ctx.error(path, `expected ${type}, got ${quote(value)}`);
      return INVALID;
    }
    return value as T;
  });
}

/** A list; a lone scalar is accepted as a list of one when `single` allows it. */
export function list<T>(item: Schema<T>, options: LeafOptions<T[]> & { min?: number; single?: boolean; type?: string } = {}): Schema<T[]> {
  const type = options.type ?? `a list of ${item.type.replace(/^an? /, '')}s`;
  const schema = leaf(type, options, (raw, path, ctx) => {
    const values = Array.isArray(raw) ? raw : options.single && raw !== null && typeof raw !== 'object' ? [raw] : null;
    if (!values) {
      ctx.error(path, `expected ${type}, got ${quote(raw)}`);
      return INVALID;
    }
    if (values.length < (options.min ?? 0)) {
      ctx.error(path, `expected ${type} with at least ${options.min} item${options.min === 1 ? '' : 's'}, got an empty list`);
      return INVALID;
    }
    const out = values.map((v, i) => item.parse(v, `${path}[${i}]`, ctx));
    return out.includes(INVALID) ? INVALID : (out as T[]);
  });
  // A list of mappings documents its items' keys too, as `path[].key`.
  return item.type === 'a mapping' ? { ...schema, docs: (path) => [...schema.docs(path), ...item.docs(`${path}[]`)] } : schema;
}

type Fields = Record<string, Schema<unknown>>;
type Out<F extends Fields> = { [K in keyof F]: F[K] extends Schema<infer T> ? T : never };

/** An object with known keys; any other key is an error. */
export function obj<F extends Fields>(fields: F, options: { doc?: string; optional?: boolean } = {}): Schema<Out<F>> {
  const requiredInside = Object.values(fields).some((f) => !f.optional && !f.fallback);
  const schema: Schema<Out<F>> = {
    type: 'a mapping',
    doc: options.doc ?? '',
    optional: options.optional ?? false,
    fallback: options.optional || requiredInside ? undefined : () => parseObject(fields, {}, '', silentContext) as Out<F>,
    parse: (raw, path, ctx) => {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        ctx.error(path, `expected a mapping, got ${quote(raw)}`);
        return INVALID;
      }
      return parseObject(fields, raw as Record<string, unknown>, path, ctx) as Parsed<Out<F>>;
    },
    docs: (path) => Object.entries(fields).flatMap(([key, field]) => field.docs(join(path, key))),
  };
  return schema;
}

const silentContext: ParseContext = { env: {}, error: () => {} };

function parseObject(fields: Fields, raw: Record<string, unknown>, path: string, ctx: ParseContext): Parsed<Record<string, unknown>> {
  let ok = true;
  for (const key of Object.keys(raw)) {
    if (!Object.hasOwn(fields, key)) {
      const known = Object.keys(fields).join(', ');
      ctx.error(join(path, key), `unknown key (expected one of: ${known})`);
      ok = false;
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(fields)) {
    const value = raw[key];
    if (value === undefined || value === null) {
      if (field.fallback) out[key] = field.fallback();
      else if (!field.optional) {
        ctx.error(join(path, key), `is required (${field.type})`);
        ok = false;
      }
      continue;
    }
    const parsed = field.parse(value, join(path, key), ctx);
    if (parsed === INVALID) ok = false;
    else out[key] = parsed;
  }
  return ok ? out : INVALID;
}

/** A mapping from names (checked by `key`) to values of one schema. */
export function dict<T>(value: Schema<T>, options: {
  doc?: string;
  keyType: string;
  key: (name: string) => boolean;
  /** Placeholder used in doc key paths, e.g. `<app>`. */
  placeholder: string;
  default?: Record<string, T>;
}): Schema<Record<string, T>> {
  return {
    type: `a mapping of ${options.keyType}s`,
    doc: options.doc ?? '',
    optional: false,
    fallback: () => structuredClone(options.default ?? {}),
    parse: (raw, path, ctx) => {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        ctx.error(path, `expected a mapping of ${options.keyType}s, got ${quote(raw)}`);
        return INVALID;
      }
      let ok = true;
      const out: Record<string, T> = {};
      for (const [name, v] of Object.entries(raw as Record<string, unknown>)) {
        // `__proto__` as a key of a plain object would set its prototype, not an entry: refused as invalid.
        if (!options.key(name) || name === '__proto__') {
          ctx.error(join(path, name), `invalid ${options.keyType} ${quote(name)}`);
          ok = false;
          continue;
        }
        const parsed = v === null && value.fallback ? value.fallback() : value.parse(v, join(path, name), ctx);
        if (parsed === INVALID) ok = false;
        else out[name] = parsed;
      }
      return ok ? out : INVALID;
    },
    docs: (path) => {
      const rows = value.docs(join(path, options.placeholder));
      const own = { key: path, type: `mapping of ${options.keyType}s`, default: '{}', doc: options.doc ?? '' };
      return value.type === 'a mapping' ? [own, ...rows] : [{ ...own, type: `mapping of ${options.keyType} to ${value.type.replace(/^an? /, '')}` }];
    },
  };
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}
