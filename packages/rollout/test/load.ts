import { Agent, request } from 'node:http';

/** One request as the load generator saw it. */
export interface Sample {
  kind: 'keep-alive' | 'close';
  path: string;
  start: number;
  end: number;
  status?: number;
  body?: string;
  /** Set when no response came: the error's code or message. */
  error?: string;
  /** Whether the request went out on a kept-alive connection used before (Node's `req.reusedSocket`). */
  reused: boolean;
}

export interface LoadOptions {
  /** `127.0.0.1:port` nginx listens on. */
  listen: string;
  /** Loops on persistent connections (one connection each, kept across requests). */
  keepAlive: number;
  /** Loops sending `Connection: close`, a fresh connection per request. */
  close: number;
  /** Paths the loops take turns on: loop i uses paths[i % paths.length]. */
  paths: readonly string[];
}

/**
 * HTTP load through nginx, as the zero-downtime test needs it: some loops
 * behave like browsers and API clients with keep-alive, others like
 * one-shot clients; each loop sends its next request as soon as the last
 * one ended. Nothing is retried: every failure is recorded.
 */
export function startLoad(options: LoadOptions): { stop: () => Promise<Sample[]> } {
  const samples: Sample[] = [];
  let running = true;
  const agents: Agent[] = [];
  const loop = async (kind: Sample['kind'], path: string) => {
    const agent = kind === 'keep-alive' ? new Agent({ keepAlive: true, maxSockets: 1 }) : undefined;
    if (agent) agents.push(agent);
    while (running) samples.push(await once(options.listen, path, kind, agent));
  };
  const loops = [
    ...Array.from({ length: options.keepAlive }, (_, i) => loop('keep-alive', options.paths[i % options.paths.length]!)),
    ...Array.from({ length: options.close }, (_, i) => loop('close', options.paths[i % options.paths.length]!)),
  ];
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      agents.forEach((a) => a.destroy());
      return samples;
    },
  };
}

function once(listen: string, path: string, kind: Sample['kind'], agent: Agent | undefined): Promise<Sample> {
  const [host, port] = listen.split(':') as [string, string];
  const start = Date.now();
  return new Promise((resolve) => {
    const req = request({
      host, port: Number(port), path, agent: agent ?? false, timeout: 10_000,
      headers: kind === 'close' ? { connection: 'close' } : {},
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ kind, path, start, end: Date.now(), status: res.statusCode, body: body.trim(), reused: req.reusedSocket }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ kind, path, start, end: Date.now(), error: err.code ?? err.message, reused: req.reusedSocket }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ kind, path, start, end: Date.now(), error: err.code ?? err.message, reused: req.reusedSocket }));
    req.end();
  });
}

/**
 * Answers whose version (`v<n>`) could not have been live while they were
 * in flight. Rollout k (0-based, its `start`/`end` in `windows`) takes the
 * app from v(k+1) to v(k+2): a request may see any version live at some
 * moment between its start and its end.
 */
export function wrongVersions(samples: readonly Sample[], windows: ReadonlyArray<{ start: number; end: number }>): Sample[] {
  const liveAt = (t: number, edge: 'low' | 'high') => {
    let v = 1;
    windows.forEach((w, i) => {
      if (t > w.end) v = i + 2;
      else if (t >= w.start && edge === 'high') v = i + 2;
    });
    return v;
  };
  return samples.filter((s) => s.body !== undefined).filter((s) => {
    const n = Number(s.body!.replace(/^v/, ''));
    return !(n >= liveAt(s.start, 'low') && n <= liveAt(s.end, 'high'));
  });
}
