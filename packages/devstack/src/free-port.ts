import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Lowest port handed out: clear of the well-known and registered ports services like to take. */
const LOWEST = 10_000;

/**
 * A TCP port free on `host` right now, chosen at random below the kernel's
 * ephemeral range (`ip_local_port_range`). Ports in that range are what
 * outgoing connections get, and Docker publishes `HostPort: ""` bindings
 * from it too, counting up from its start: a port the kernel handed out
 * there could be taken by some container's docker-proxy before the test
 * binds it (seen: a test's nginx could not listen on its app's port, and a
 * container answered there instead until it stopped).
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const below = ephemeralStart();
  if (below - LOWEST >= 1000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = LOWEST + Math.floor(Math.random() * (below - LOWEST));
      if (await isPortFree(port, host)) return port;
    }
  }
  const port = await bindOnce(host, 0);
  if (port === null) throw new Error(`no free port on ${host}`);
  return port;
}

/** Whether `port` can be bound on `host` right now. */
export async function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return (await bindOnce(host, port)) !== null;
}

function ephemeralStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : LOWEST;
  } catch {
    return LOWEST;
  }
}

/** Binds `port` (0: the kernel's choice) and lets it go; the port, or null when it is taken. */
function bindOnce(host: string, port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(null) : reject(err)));
    server.listen(port, host, () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : null));
    });
  });
}
