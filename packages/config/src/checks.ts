import { isBranchName } from '@slipway/core/validate';

/** Each returns null when the value is fine, else a short reason. */
export type Check = (value: string) => string | null;

export const ipv4: Check = (v) => {
  const parts = v.split('.');
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255) ? null : 'invalid';
};

export const hostPort: Check = (v) => {
  const m = /^(.+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) return 'invalid';
  return ipv4(m[1]!) && !/^[a-z0-9.-]+$/i.test(m[1]!) ? 'invalid' : null;
};

export const hostname: Check = (v) =>
  /^(\*\.)?[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62}))*\.?$|^_$|^localhost$/.test(v) ? null : 'invalid';

export const url = (protocols: string[]): Check => (v) => {
  try {
    const parsed = new URL(v);
    return protocols.includes(parsed.protocol.replace(/:$/, '')) ? null : `protocol must be ${protocols.join(' or ')}`;
  } catch {
    return 'invalid';
  }
};

/** Where git may clone from; never something git could read as an option. */
export const repoUrl: Check = (v) => {
  if (v.startsWith('-')) return 'must not start with "-"';
  if (/[\s\0]/.test(v)) return 'must not contain whitespace';
  // git would see such a password in its argv; an http(s) one is moved into credentials before git runs.
  if (/^(?!https?:)[a-z][a-z0-9+.-]*:\/\/[^/@]*:[^/@]*@/i.test(v)) return 'must not hold a password (use credentials.ssh_key for ssh)';
  if (/^(https?|ssh|git|file):\/\/[^/]/.test(v) || /^file:\/\/\//.test(v)) return null;
  if (/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*/.test(v)) return null; // scp-like git@host:owner/name
  if (v.startsWith('/')) return null; // a local path
  // owner/name: matches webhooks from any forge; deploys clone it from the forge `forges` names.
  if (/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(v) && !v.split('/').some((p) => p === '.' || p === '..' || p.startsWith('-'))) return null;
  return 'expected an http(s)://, ssh://, git://, file:// URL, user@host:path, an absolute path or owner/name';
};

export const minLength = (min: number): Check => (v) => (v.length >= min ? null : `shorter than ${min} characters`);

export const branch: Check = (v) => (isBranchName(v) ? null : 'invalid');

export const absolutePath: Check = (v) => (v.startsWith('/') ? null : 'must be absolute');

export const etcdPrefix: Check = (v) =>
  /^\/[A-Za-z0-9._\/-]*[A-Za-z0-9._-]$/.test(v) && !v.includes('//') ? null : 'must start with "/", not end with "/", and use only [A-Za-z0-9._/-]';

export const urlPath: Check = (v) => (/^\/[\x21-\x7e]*$/.test(v) ? null : 'must start with "/" and contain no spaces');

/** A path inside the repository: relative, no way out of it. */
export const repoPath: Check = (v) =>
  !v.startsWith('/') && !v.split('/').includes('..') && v.length > 0 && !v.startsWith('-') ? null : 'must be a relative path inside the repository';

/** nginx `listen`: a port, or address:port. */
export const listen: Check = (v) => {
  if (/^\d{1,5}$/.test(v)) return Number(v) >= 1 && Number(v) <= 65535 ? null : 'invalid';
  return hostPort(v);
};

export const cidr: Check = (v) => {
  const m = /^(.+)\/(\d{1,2})$/.exec(v);
  if (!m || ipv4(m[1]!) || Number(m[2]) < 16 || Number(m[2]) > 30) return 'an IPv4 network with a prefix of 16-30 bits';
  return null;
};

export const envName = (v: string) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(v);
