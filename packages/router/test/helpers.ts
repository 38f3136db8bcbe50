import { createServer, type Server } from 'node:http';
import { validateConfig } from '@slipway/config/load-config';
import type { AppConfig } from '@slipway/config/types';
import { freePort } from '@slipway/devstack/testing';

/** A plain HTTP server on loopback answering `<body>\n`: a stand-in container for routing tests (any 127.x address works). */
export async function backend(body: string, at: { host?: string; port?: number } = {}): Promise<{ address: string; close: () => Promise<void> }> {
  const server: Server = createServer((_req, res) => res.end(`${body}\n`));
  const host = at.host ?? '127.0.0.1';
  const port = at.port ?? (await freePort(host));
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    address: `${host}:${port}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** Apps as the config loader builds them (defaults filled in), on loopback ports of the test's own. */
export function appsConfig(apps: Record<string, Record<string, unknown>>): Record<string, AppConfig> {
  const raw = Object.fromEntries(Object.entries(apps).map(([name, app]) => [name, { repo: 'https://example.com/acme/app.git', ...app }]));
  return validateConfig({ apps: raw }, { file: null, env: {} }).apps;
}

/** The body nginx answers on `listen`, or the error's text. */
export async function fetchText(listen: string, path = '/'): Promise<string> {
  try {
    const res = await fetch(`http://${listen}${path}`, { signal: AbortSignal.timeout(2000) });
    return `${res.status} ${(await res.text()).trim()}`;
  } catch (err) {
    return `error ${(err as Error).message}`;
  }
}

/** Polls until `probe` returns true; returns the time it took, throws after `timeoutMs`. */
export async function within(timeoutMs: number, probe: () => Promise<boolean>, what = 'condition'): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
