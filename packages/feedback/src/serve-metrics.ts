import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '@slipway/core/logger';
import type { Registry } from 'prom-client';

/**
 * Serves `GET /metrics` from `registry` on `address` (`host:port`, port 0
 * for any). Resolves with the server once it listens, or null when the
 * address is taken (a second worker or receiver on the machine): that
 * process serves no metrics, and says so once. Other listen errors reject.
 * `what` names the process in that message (default `worker`).
 */
export async function serveMetrics(registry: Registry, address: string, logger: Logger, what = 'worker'): Promise<Server | null> {
  const split = address.lastIndexOf(':');
  const host = address.slice(0, split).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(split + 1));
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('use GET\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: Error) => {
        logger.warn({ err: err.message }, 'could not collect metrics');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  server.requestTimeout = 10_000;
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EADDRINUSE') return reject(err);
      logger.warn({ address }, `metrics address ${address} is taken (another ${what}?); this one serves no metrics`);
      resolve(null);
    });
    server.listen(port, host, () => {
      const bound = server.address() as AddressInfo;
      const shown = bound.address.includes(':') ? `[${bound.address}]` : bound.address;
      logger.info({ host: bound.address, port: bound.port }, `metrics on http://${shown}:${bound.port}/metrics`);
      resolve(server);
    });
  });
}
