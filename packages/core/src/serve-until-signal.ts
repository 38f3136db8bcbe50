import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.js';

export interface ServeOptions {
  /** Already told to listen (`app.listen(port, host)`). */
  server: Server;
  logger: Logger;
  /** What listens, for log lines: "receiver", "dashboard". */
  what: string;
  /** Extra fields for the "listening" line. */
  fields?: Record<string, unknown>;
  /** How long requests in flight get after the signal before their connections are cut. */
  graceMs: number;
  /** Called once the "listening" line is logged (flush a buffered logger here). */
  onListening?: () => void;
  /** Called when the signal comes, before the server closes (end long-lived streams here). */
  onSignal?: () => void;
}

/**
 * A service's life after `listen`: waits until it listens (false when it
 * cannot: a taken port), logs where, then serves until SIGTERM or SIGINT
 * and closes gracefully: no new connections, idle ones closed at once,
 * busy ones given `graceMs`. Resolves true after a clean shutdown.
 */
export async function serveUntilSignal(options: ServeOptions): Promise<boolean> {
  const { server, logger } = options;
  const listening = await new Promise<boolean>((resolve) => {
    if (server.listening) return resolve(true);
    server.once('listening', () => resolve(true));
    server.once('error', (err) => {
      logger.error({ err: err.message }, `${options.what} cannot listen: ${err.message}`);
      resolve(false);
    });
  });
  if (!listening) return false;
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  logger.info({ host: address.address, port: address.port, ...options.fields }, `${options.what} listening on http://${host}:${address.port}`);
  options.onListening?.();

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ signal }, 'shutting down');
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  options.onSignal?.();
  server.closeIdleConnections();
  const grace = setTimeout(() => server.closeAllConnections(), options.graceMs);
  await closed;
  clearTimeout(grace);
  return true;
}
