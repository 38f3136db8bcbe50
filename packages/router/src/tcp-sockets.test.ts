import { describe, expect, it } from 'vitest';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientConnectionsHeld } from './nginx-reload.js';
import { connectionCounts, countEstablished, decodeAddress, parseListeningUnixSockets, parseProcNetTcp, parseUnixSockets } from './tcp-sockets.js';

const TABLE = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:8001 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20171 1 0000000000000000 100 0 0 10 0
   3: 0100007F:8001 0100007F:B0CE 01 00000000:00000000 02:00000577 00000000     0        0 20389 2 0000000000000000 20 0 0 10 -1
   4: 0100007F:B0CE 0100007F:8001 01 00000000:00000000 00:00000000 00000000     0        0 20833 2 0000000000000000 20 0 0 10 -1
   5: 0100007F:8001 0100007F:B0D0 06 00000000:00000000 03:00000577 00000000     0        0 0 3 0000000000000000
`;

describe('/proc/net/tcp', () => {
  it.each([
    ['0100007F:1F90', '127.0.0.1:8080'],
    ['00000000:0050', '0.0.0.0:80'],
    ['0A0B7F7F:0001', '127.127.11.10:1'],
    ['0000000000000000FFFF00000100007F:1F90', '127.0.0.1:8080'],
    ['00000000000000000000000001000000:0050', '[::1]:80'],
    ['B80D0120000000000000000005000000:7531', '[2001:db8::5]:30001'],
  ])('decodes %s as %s', (hex, address) => expect(decodeAddress(hex)).toBe(address));

  it('parses sockets and counts each ESTABLISHED connection to an address once, though both its ends are here', () => {
    const sockets = parseProcNetTcp(TABLE);
    expect(sockets).toHaveLength(4);
    expect(sockets[0]).toEqual({ local: '127.0.0.1:32769', remote: '0.0.0.0:0', state: 0x0a, inode: 20171 });
    // The accepted side (local :32769) and the client's (peer :32769) are one connection; TIME_WAIT does not count.
    expect(countEstablished(sockets, ['127.0.0.1:32769', '127.0.0.1:1'])).toEqual(new Map([['127.0.0.1:32769', 1], ['127.0.0.1:1', 0]]));
  });

  it('counts connections to another host by their peer: nginx\'s end is all this host has of them', () => {
    const established = (local: string, remote: string) => ({ local, remote, state: 0x01, inode: 0 });
    const sockets = [established('10.77.0.1:40000', '10.77.0.11:30001'), established('10.77.0.1:40002', '10.77.0.11:30001'), established('10.77.0.1:40004', '10.77.0.12:30001')];
    expect(countEstablished(sockets, ['10.77.0.11:30001', '10.77.0.13:30001'])).toEqual(new Map([['10.77.0.11:30001', 2], ['10.77.0.13:30001', 0]]));
  });
});

describe('a port published on every address (host_ip 0.0.0.0)', () => {
  it('counts the connections that came in on any address of it: no socket ever shows 0.0.0.0', () => {
    const established = (local: string, remote: string) => ({ local, remote, state: 0x01, inode: 0 });
    // nginx asked for 0.0.0.0:32770 and got 127.0.0.1:32770 (both ends here); someone else came in on 10.0.0.5.
    const sockets = [established('127.0.0.1:32770', '127.0.0.1:45000'), established('127.0.0.1:45000', '127.0.0.1:32770'), established('10.0.0.5:32770', '10.0.0.9:51000'), established('127.0.0.1:45002', '10.0.0.7:32770')];
    expect(countEstablished(sockets, ['0.0.0.0:32770', '0.0.0.0:32771'])).toEqual(new Map([['0.0.0.0:32770', 2], ['0.0.0.0:32771', 0]]));
  });

  it('counts them on this host as asked, through ss or /proc: a drain of such a port waits for its connections', async () => {
    const accepted: Socket[] = [];
    const server = createServer((socket) => accepted.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
    const port = (server.address() as AddressInfo).port;
    const client = connect(port, '127.0.0.1');
    try {
      await new Promise<void>((resolve) => client.once('connect', resolve));
      expect(await connectionCounts([`0.0.0.0:${port}`])).toEqual(new Map([[`0.0.0.0:${port}`, 1]]));
      expect(await connectionCounts([`127.0.0.1:${port}`])).toEqual(new Map([[`127.0.0.1:${port}`, 1]]));
    } finally {
      client.destroy();
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('/proc/net/unix', () => {
  it('keeps the listening sockets that have a path, as nginx names them', () => {
    const table = `Num       RefCount Protocol Flags    Type St Inode Path
00000000112d8c8f: 00000002 00000000 00010000 0001 01 6522798 /tmp/back/slipway-hello.sock
0000000029cb1f7b: 00000003 00000000 00000000 0001 03 6522812 /tmp/back/slipway-hello.sock
00000000a6d1a0f1: 00000002 00000000 00010000 0001 01 1820 @/containerd-shim/abc.sock
000000004b2b1d4c: 00000002 00000000 00000000 0002 01 1855
`;
    // Accepting (Flags 0x10000) with a file path: not the connected peer, not an abstract name, not a nameless socket.
    expect(parseListeningUnixSockets(table)).toEqual([{ local: 'unix:/tmp/back/slipway-hello.sock', remote: '', state: 0x0a, inode: 6522798 }]);
    // And the connections it accepted (St 03), which carry its path: what a drain counts of the back's retiring workers.
    expect(parseUnixSockets(table)).toEqual([
      { local: 'unix:/tmp/back/slipway-hello.sock', remote: '', state: 0x0a, inode: 6522798 },
      { local: 'unix:/tmp/back/slipway-hello.sock', remote: '', state: 0x01, inode: 6522812 },
    ]);
  });
});

describe('clientConnectionsHeld', () => {
  it('counts the connections a process accepted on a unix socket (the back of two tiers), as on a TCP address', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-held-'));
    const path = join(dir, 'slipway-app.sock');
    const accepted: Socket[] = [];
    const server = createServer((socket) => void accepted.push(socket));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const clients = [connect(path), connect(path)];
    try {
      await expect.poll(() => accepted.length).toBe(2);
      // This process holds both ends; only the accepted ones carry the socket's path.
      expect(await clientConnectionsHeld([process.pid], `unix:${path}`)).toBe(2);
      for (const client of clients) client.destroy();
      await expect.poll(() => clientConnectionsHeld([process.pid], `unix:${path}`)).toBe(0);
    } finally {
      for (const client of clients) client.destroy();
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
