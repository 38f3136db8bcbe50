/**
 * A `host:port` as stored under an app's etcd prefix. Values come from etcd,
 * where anyone with `etcdctl` can write, and end up in an nginx file: only
 * an IPv4 address or a plain host name and a port get through, nothing that
 * could close a directive or open a block.
 */
const ADDRESS = /^(?:(\d{1,3}(?:\.\d{1,3}){3})|([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)):(\d{1,5})$/;

export function isUpstreamAddress(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const m = ADDRESS.exec(value);
  if (!m) return false;
  if (m[1] && m[1].split('.').some((part) => Number(part) > 255)) return false;
  const port = Number(m[3]);
  return port >= 1 && port <= 65535;
}
