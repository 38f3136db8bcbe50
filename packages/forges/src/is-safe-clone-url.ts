const SCP = /^[A-Za-z0-9._-]+@[A-Za-z0-9][A-Za-z0-9.-]*:[A-Za-z0-9._~][A-Za-z0-9._~/-]*$/;

/**
 * A clone URL a worker may hand to git as-is: http(s), ssh or git, or
 * scp-like `user@host:path`; never option-like (`--upload-pack=…`), never a
 * local path, file:// or ext:: transport, no whitespace or control
 * characters, no password, no query, no `.`/`..` segment.
 */
export function isSafeCloneUrl(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048) return false;
  if (value.startsWith('-') || /[\s\0-\x1f\x7f\\]/.test(value)) return false;
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    return false;
  }
  if (/[\s\0-\x1f\x7f\\]/.test(decoded) || decoded.split('/').some((s) => s === '..' || s === '.')) return false;
  if (SCP.test(value)) return true;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (!['https:', 'http:', 'ssh:', 'git:'].includes(url.protocol)) return false;
  if (!/^[A-Za-z0-9[][A-Za-z0-9.:[\]-]*$/.test(url.hostname) || url.password !== '') return false;
  if ((url.protocol === 'https:' || url.protocol === 'http:' || url.protocol === 'git:') && url.username !== '') return false;
  return url.search === '' && url.hash === '' && url.pathname.length > 1 && !value.includes('?') && !value.includes('#');
}
