import { createServer, type Socket } from 'node:net';

/** A peer on 127.0.0.1 that accepts connections, reads them, and never answers: a wedged engine or server. */
export interface WedgedPeer {
  port: number;
  /** The connections it took, for a test to see whether they were let go. */
  held: Socket[];
  close(): Promise<void>;
}

export async function startWedgedPeer(): Promise<WedgedPeer> {
  const held: Socket[] = [];
  const server = createServer((socket) => {
    held.push(socket);
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    held,
    async close() {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
