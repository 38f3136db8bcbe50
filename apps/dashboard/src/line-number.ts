import { InvalidInputError } from '@slipway/core/slipway-error';

/** A 1-based line number (or count) from a query string or header; `fallback` when absent. */
export function lineNumber(value: unknown, name: string, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = typeof value === 'string' && /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(n)) throw new InvalidInputError(`${name}: a whole number, got ${JSON.stringify(String(value).slice(0, 40))}`);
  return n;
}
