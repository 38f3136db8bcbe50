import { Agent, request } from 'node:http';

export interface LoadOptions {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  /** Paths requested in turn by each client. Default ['/']. */
  paths?: string[];
  /** Concurrent clients. */
  clients: number;
  /** Reuse connections (keep-alive clients) or close after every request. */
  keepAlive: boolean;
  /** Host header, for server_name routing. */
  host?: string;
  /** GET (default), or POST with a small form body: what a proxy may not send again once sent. */
  method?: 'GET' | 'POST';
  /** Each client's pause between an answer and its next request, in ms. Default 0. */
  gapMs?: number;
}

export interface LoadReport {
  requests: number;
  ok: number;
  /** Responses that were not 2xx, with what they said. */
  failures: Array<{ status: number; body: string; at: number }>;
  /** Requests that got no response at all (reset, refused, closed early). */
  socketErrors: Array<{ code: string; at: number }>;
  /** How often each body was served. */
  bodies: Record<string, number>;
  /** The body of the last 2xx answer to arrive (of whichever request: a slow one started earlier may be last). */
  lastBody: string | null;
  /** Per body of a 2xx answer, when (Date.now()) the last request answered with it was sent, and when its last answer ended. */
  bodyTimes: Record<string, { lastSent: number; lastEnded: number }>;
}

/**
 * HTTP clients hammering a URL until stopped, counting what they get: the
 * evidence for "no request dropped during a rollout". Keep-alive clients
 * share a keep-alive agent; connection-close clients send `Connection: close`.
 */
export function startLoad(options: LoadOptions): { stop(): Promise<LoadReport>; report: LoadReport } {
  const report: LoadReport = { requests: 0, ok: 0, failures: [], socketErrors: [], bodies: {}, lastBody: null, bodyTimes: {} };
  const agent = new Agent({ keepAlive: options.keepAlive, maxSockets: options.clients });
  const base = new URL(options.url);
  const paths = options.paths ?? ['/'];
  const method = options.method ?? 'GET';
  let running = true;

  const once = (path: string) => new Promise<void>((resolve) => {
    const sent = Date.now();
    const req = request({
      host: base.hostname, port: base.port, path, agent, method,
      headers: { ...(options.keepAlive ? {} : { Connection: 'close' }), ...(options.host ? { Host: options.host } : {}) },
      timeout: 15_000,
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        report.requests++;
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          report.ok++;
          report.bodies[body] = (report.bodies[body] ?? 0) + 1;
          report.lastBody = body;
          const times = (report.bodyTimes[body] ??= { lastSent: 0, lastEnded: 0 });
          times.lastSent = Math.max(times.lastSent, sent);
          times.lastEnded = Date.now();
        } else {
          report.failures.push({ status, body: body.slice(0, 200), at: Date.now() });
        }
        resolve();
      });
      res.on('error', (err: NodeJS.ErrnoException) => {
        report.requests++;
        report.socketErrors.push({ code: err.code ?? err.message, at: Date.now() });
        resolve();
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => {
      report.requests++;
      report.socketErrors.push({ code: err.code ?? err.message, at: Date.now() });
      resolve();
    });
    req.end(method === 'POST' ? 'deploy=1' : undefined);
  });

  const loops = Array.from({ length: options.clients }, async (_, client) => {
    for (let i = client; running; i++) {
      await once(paths[i % paths.length]!);
      if (options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
    }
  });

  return {
    report,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return report;
    },
  };
}
