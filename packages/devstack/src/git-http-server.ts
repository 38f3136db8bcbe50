import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GitHttpServer {
  /** `http://127.0.0.1:<port>`; a bare repository `<root>/x/y.git` is at `<url>/x/y.git`. */
  url: string;
  /** Authorization headers seen, one per request: the last MAX_KEPT (`npm start` serves for days). */
  requests: Array<{ method: string; path: string; authorized: boolean }>;
  /** With `auth`: command lines of every process found holding the password during a request (should stay empty); the first MAX_KEPT. */
  leaks: string[];
  close(): Promise<void>;
}

/**
 * Bare repositories under `root` over git's smart HTTP: `git http-backend`
 * run as an argv CGI process (no shell) behind a Node server, like a forge
 * serving clones. With `auth` it demands Basic auth, and while each
 * authorised request is served (so while the client's git is certainly
 * running) it scans every process's argv for the password.
 */
export interface GitHttpServerOptions {
  root: string;
  auth?: { username: string; password: string };
  /** Default: any free port. */
  port?: number;
  /** A path prefix the repositories are served under (`<url>/<mount>/y.git` is `<root>/y.git`); default none. */
  mount?: string;
}

/** How many requests and leaks a server remembers. */
const MAX_KEPT = 1000;

export async function startGitHttpServer(options: GitHttpServerOptions): Promise<GitHttpServer> {
  const auth = options.auth;
  const expected = auth ? `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` : null;
  const requests: GitHttpServer['requests'] = [];
  const leaks: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const authorized = expected === null || req.headers.authorization === expected;
    requests.push({ method: req.method ?? '', path: url.pathname, authorized });
    if (requests.length > MAX_KEPT) requests.shift();
    if (auth && expected && leaks.length < MAX_KEPT) leaks.push(...processesMentioning([auth.password, expected.slice('Basic '.length)]));
    const mount = options.mount ? `/${options.mount}` : '';
    if (!url.pathname.startsWith(`${mount}/`)) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('no such repository\n');
      return;
    }
    url.pathname = url.pathname.slice(mount.length);
    if (!authorized) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"', 'Content-Type': 'text/plain' });
      res.end('authentication required\n');
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      // `%zz`: answered, not thrown from the handler (which would end the process serving it, `npm start`'s).
      res.writeHead(400, { 'Content-Type': 'text/plain' });
      res.end('bad path\n');
      return;
    }
    cgi(req, res, path, url.search.slice(1), options.root, auth?.username ?? 'anonymous');
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    leaks,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function cgi(req: IncomingMessage, res: ServerResponse, path: string, query: string, root: string, user: string): void {
  const child = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: req.method,
      PATH_INFO: path,
      QUERY_STRING: query,
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_USER: user,
      REMOTE_ADDR: '127.0.0.1',
      ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) } : {}),
      ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  // git may exit before it has read the request's body (a repository that does not exist): its EPIPE is no crash.
  child.stdin.on('error', () => {});
  child.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' });
    res.end(`git http-backend: ${err.message}\n`);
  });
  req.pipe(child.stdin);
  let head = Buffer.alloc(0);
  let headersDone = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headersDone) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    headersDone = true;
    let status = 200;
    const headers: Record<string, string> = {};
    for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
      else headers[name] = value;
    }
    res.writeHead(status, headers);
    res.write(head.subarray(end + 4));
  });
  child.on('close', () => res.end());
}

/** Every process whose argv contains one of `needles`. */
function processesMentioning(needles: string[]): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (needles.some((needle) => argv.includes(needle))) found.push(`${pid}: ${argv}`);
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}
