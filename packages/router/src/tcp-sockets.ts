import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { CommandError, runCommand } from '@slipway/core/run-command';

/*
 * This host's TCP sockets, as the kernel lists them: the listening ones
 * (which nginx processes accept where: how a reload is observed; unix ones
 * too, where a back nginx of two tiers listens) and the connections an
 * address still carries (how a drain is observed).
 */

/** One socket from /proc/net/tcp{,6}, addresses decoded to `ip:port`. */
export interface TcpSocket {
  local: string;
  remote: string;
  state: TcpState;
  inode: number;
}

/** The kernel's numbering (include/net/tcp_states.h), the states Slipway looks at. */
export const TcpState = { ESTABLISHED: 0x01, LISTEN: 0x0a } as const;
export type TcpState = number;

/** Parses the text of /proc/net/tcp or /proc/net/tcp6. Pure. */
export function parseProcNetTcp(text: string): TcpSocket[] {
  const sockets: TcpSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10) continue;
    const local = decodeAddress(fields[1]!);
    const remote = decodeAddress(fields[2]!);
    if (!local || !remote) continue;
    sockets.push({ local, remote, state: parseInt(fields[3]!, 16), inode: Number(fields[9]) });
  }
  return sockets;
}

/** `0100007F:1F90` → `127.0.0.1:8080`; IPv6 (IPv4-mapped ones as IPv4) → `[::1]:8080`. */
export function decodeAddress(hex: string): string | null {
  const [ip, port] = hex.split(':');
  if (!ip || !port) return null;
  const portNumber = parseInt(port, 16);
  if (ip.length === 8) return `${littleEndianWord(ip).join('.')}:${portNumber}`;
  if (ip.length !== 32) return null;
  // Four 32-bit words, each in host (little-endian) byte order.
  const bytes = [0, 1, 2, 3].flatMap((w) => littleEndianWord(ip.slice(w * 8, w * 8 + 8)));
  const isMapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  if (isMapped) return `${bytes.slice(12).join('.')}:${portNumber}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // In the compressed form ss prints and addresses are written in ([2001:db8::5], not [2001:db8:0:0:0:0:0:5]).
  return `${new URL(`http://[${groups.join(':')}]/`).hostname}:${portNumber}`;
}

function littleEndianWord(hex: string): number[] {
  return [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

/** Every TCP socket of this network namespace, IPv4 and IPv6. */
export async function readTcpSockets(): Promise<TcpSocket[]> {
  const tables = await Promise.all(['/proc/net/tcp', '/proc/net/tcp6'].map((file) => readFile(file, 'utf8').catch(() => '')));
  return tables.flatMap(parseProcNetTcp);
}

/**
 * ESTABLISHED connections to each address, seen from either end: sockets
 * whose local end is the address (on one host, docker-proxy's side of
 * every connection nginx, or anyone, opened to a container's port) or
 * whose peer is (nginx's own side: the only one this host has of a
 * connection to a task on another swarm node, or to a port published
 * without docker-proxy). The larger of the two counts, since on one host
 * each connection shows at both ends.
 */
export function countEstablished(sockets: readonly TcpSocket[], addresses: readonly string[]): Map<string, number> {
  const local = new Map(addresses.map((a) => [a, 0]));
  const peer = new Map(local);
  // A port published on every address (host_ip 0.0.0.0): no socket shows 0.0.0.0, a connection to it shows the address
  // it came in on (127.0.0.1 when nginx asks for 0.0.0.0). Matched by port here, the peer's end only on loopback.
  const anyAddress = new Map(addresses.filter((a) => a.startsWith('0.0.0.0:')).map((a) => [portOf(a), a]));
  const bump = (counts: Map<string, number>, address: string | undefined) => {
    if (address !== undefined && counts.has(address)) counts.set(address, counts.get(address)! + 1);
  };
  for (const socket of sockets) {
    if (socket.state !== TcpState.ESTABLISHED) continue;
    bump(local, local.has(socket.local) ? socket.local : anyAddress.get(portOf(socket.local)));
    bump(peer, peer.has(socket.remote) ? socket.remote : socket.remote.startsWith('127.') ? anyAddress.get(portOf(socket.remote)) : undefined);
  }
  return new Map(addresses.map((a) => [a, Math.max(local.get(a)!, peer.get(a)!)]));
}

function portOf(address: string): string {
  return address.slice(address.lastIndexOf(':') + 1);
}

/**
 * Only the listening sockets. The kernel lists them before every other
 * socket, so reading stops at the first line of another state: a few
 * kilobytes, however many thousand TIME_WAIT entries follow (a busy proxy
 * host has tens of thousands, and reading them all costs 60-250 ms).
 */
export function readListeningSockets(): TcpSocket[] {
  const sockets: TcpSocket[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch {
      continue;
    }
    try {
      const buffer = Buffer.allocUnsafe(16 * 1024);
      let pending = '';
      let header = true;
      reading: for (;;) {
        const n = readSync(fd, buffer, 0, buffer.length, null);
        if (n === 0) break;
        const lines = (pending + buffer.toString('latin1', 0, n)).split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) {
          if (header) {
            header = false;
            continue;
          }
          const [socket] = parseProcNetTcp(`\n${line}`);
          if (!socket) continue;
          if (socket.state !== TcpState.LISTEN) break reading;
          sockets.push(socket);
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  return sockets;
}

/** `__SO_ACCEPTCON` in /proc/net/unix's Flags: the socket listens. */
const UNIX_ACCEPTING = 0x10000;

/**
 * The listening unix sockets that have a path (as `unix:<path>`, the way
 * nginx's `listen` names them), from the text of /proc/net/unix. Pure.
 */
export function parseListeningUnixSockets(text: string): TcpSocket[] {
  return parseUnixSockets(text).filter((socket) => socket.state === TcpState.LISTEN);
}

/** /proc/net/unix's St of a connected socket (SS_CONNECTED). */
const UNIX_CONNECTED = 3;

/**
 * The unix sockets that have a path, from the text of /proc/net/unix: the
 * listening ones (state LISTEN) and those a listener accepted, which carry
 * its path (state ESTABLISHED), each as `unix:<path>`. Pure.
 */
export function parseUnixSockets(text: string): TcpSocket[] {
  const sockets: TcpSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8 || !fields[7]!.startsWith('/')) continue;
    const listening = (parseInt(fields[3]!, 16) & UNIX_ACCEPTING) !== 0;
    if (!listening && parseInt(fields[5]!, 16) !== UNIX_CONNECTED) continue;
    sockets.push({ local: `unix:${fields.slice(7).join(' ')}`, remote: '', state: listening ? TcpState.LISTEN : TcpState.ESTABLISHED, inode: Number(fields[6]) });
  }
  return sockets;
}

/** This network namespace's unix sockets with a path, listening or accepted (the back's sockets of two tiers). */
export function readUnixSockets(): TcpSocket[] {
  try {
    return parseUnixSockets(readFileSync('/proc/net/unix', 'latin1'));
  } catch {
    return [];
  }
}

/** This network namespace's listening unix sockets with a path. */
export function readListeningUnixSockets(): TcpSocket[] {
  return readUnixSockets().filter((socket) => socket.state === TcpState.LISTEN);
}

/**
 * What connecting to the unix socket at `path` finds: someone accepting,
 * a socket file nobody listens on (`refused`), no file (`absent`), or
 * something that says neither (no permission, no answer within 1 s:
 * `unknown`). Unlike /proc/net/unix, which lists only this network
 * namespace's sockets, this answers for a socket of any namespace.
 */
export function probeUnixSocket(path: string): Promise<'accepts' | 'refused' | 'absent' | 'unknown'> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.setTimeout(1_000, () => socket.destroy());
    socket.once('connect', () => {
      socket.destroy();
      resolve('accepts');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : err.code === 'ENOENT' ? 'absent' : 'unknown'));
    socket.once('close', () => resolve('unknown'));
  });
}

/**
 * ESTABLISHED TCP connections to each `ip:port`, seen from either end (see
 * countEstablished), in this network namespace.
 *
 * Asks `ss` first: it has the kernel filter by state and address (netlink
 * inet_diag), about 10 ms whatever else is open. Reading /proc/net/tcp
 * instead walks every socket, TIME_WAIT ones included: on a proxy host
 * with churn (tens of thousands of entries) that is 60-250 ms per reading.
 * /proc/net/tcp stays the fallback where `ss` is missing.
 */
export async function connectionCounts(addresses: readonly string[]): Promise<Map<string, number>> {
  if (addresses.length === 0) return new Map();
  // No socket shows 0.0.0.0 (see countEstablished): a port published on every address is asked for by port.
  const ends = (a: string) => (a.startsWith('0.0.0.0:') ? ['sport', '=', `:${portOf(a)}`, 'or', 'dport', '=', `:${portOf(a)}`] : ['src', a, 'or', 'dst', a]);
  const filter = ['(', ...addresses.flatMap((a, i) => [...(i === 0 ? [] : ['or']), ...ends(a)]), ')'];
  try {
    const { stdout } = await runCommand(['ss', '-Htn', 'state', 'established', ...filter], { timeoutMs: 5_000 });
    const sockets: TcpSocket[] = [];
    for (const line of stdout.split('\n')) {
      // Recv-Q Send-Q Local Peer (no State column when a state is given).
      const [, , local, remote] = line.trim().split(/\s+/);
      if (local !== undefined && remote !== undefined) sockets.push({ local, remote, state: TcpState.ESTABLISHED, inode: 0 });
    }
    return countEstablished(sockets, addresses);
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    return countEstablished(await readTcpSockets(), addresses);
  }
}
