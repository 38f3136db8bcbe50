import { connect, createServer, type Socket } from 'node:net';

/** One connection through a TcpRelay: the test's client end and the relay's own to the target. */
export interface RelayedConnection {
  client: Socket;
  server: Socket;
}

/** What a relay does with each chunk; without a hook, it forwards it. */
export interface TcpRelayHooks {
  toServer?: (chunk: Buffer, connection: RelayedConnection) => void;
  toClient?: (chunk: Buffer, connection: RelayedConnection) => void;
  /** The target closed its side (a hook holding chunks back may want to hold this too); default: the client's side is ended. */
  serverEnded?: (connection: RelayedConnection) => void;
}

export interface TcpRelay {
  /** The relay's own port on 127.0.0.1. */
  port: number;
  /** Every connection reset and no new one taken: the client is cut off as a crashed peer or a broken network cuts it. */
  cut(): void;
}

/**
 * A TCP relay on 127.0.0.1 to `host:port`, for tests that lose, hold or
 * mangle what a client and a server (etcd, Redis) say to each other the
 * way a network or a proxy can: each chunk goes through the hooks.
 */
export async function startTcpRelay(target: { host: string; port: number }, hooks: TcpRelayHooks = {}): Promise<TcpRelay> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const connection = { client, server: connect(target.port, target.host) };
    for (const s of [connection.client, connection.server]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    connection.client.on('data', (chunk: Buffer) => (hooks.toServer ? hooks.toServer(chunk, connection) : connection.server.write(chunk)));
    connection.server.on('data', (chunk: Buffer) => (hooks.toClient ? hooks.toClient(chunk, connection) : connection.client.write(chunk)));
    connection.client.on('end', () => connection.server.end());
    connection.server.on('end', () => (hooks.serverEnded ? hooks.serverEnded(connection) : connection.client.end()));
    connection.client.on('close', () => connection.server.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    cut: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/** A relay to a Redis that can lose one answer: see startRedisRelay. */
export interface RedisRelay {
  /** `redis://` URL of the relay. */
  url: string;
  /** The connection is dropped in place of the reply to the next request carrying `marker` (a key): Redis ran it, and ioredis sends it again. */
  dropReplyTo(marker: string): void;
  /** How many replies were dropped so far. */
  drops(): number;
  close(): void;
}

/** A relay to the Redis at `url` (no password), for tests of what a lost answer does. */
export async function startRedisRelay(url: string): Promise<RedisRelay> {
  const target = new URL(url);
  let marker: string | null = null;
  let drops = 0;
  const dropNext = new WeakSet<RelayedConnection>();
  const relay = await startTcpRelay({ host: target.hostname, port: Number(target.port) }, {
    toServer: (chunk, c) => {
      if (marker !== null && chunk.includes(marker)) {
        marker = null;
        dropNext.add(c);
      }
      c.server.write(chunk);
    },
    toClient: (chunk, c) => {
      if (!dropNext.has(c)) {
        c.client.write(chunk);
        return;
      }
      drops += 1;
      c.client.destroy();
      c.server.destroy();
    },
  });
  return {
    url: `redis://127.0.0.1:${relay.port}`,
    dropReplyTo: (m) => {
      marker = m;
    },
    drops: () => drops,
    close: relay.cut,
  };
}
