/** Where to go after signing in: a path on this site only (never `//evil` or `https://…`), else `/`. */
export function safeNext(value: unknown): string {
  if (typeof value !== 'string' || value.length > 2000) return '/';
  if (!value.startsWith('/') || value.startsWith('//') || value.startsWith('/\\')) return '/';
  if (/[\u0000-\u001f\u007f\\]/.test(value)) return '/';
  if (value.startsWith('/sign-in') || value.startsWith('/sign-out')) return '/';
  return value;
}
