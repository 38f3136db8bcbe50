import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/*
 * What a forge does, for tests: it signs the webhooks it sends, and it
 * takes commit statuses. Written from the forges' documentation, not from
 * Slipway's code, so that a test signing with these and a receiver
 * verifying with @slipway/forges check each other.
 */

/**
 * GitHub's `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the
 * exact body bytes. Slipway signs its own webhook notifications the same
 * way (`X-Slipway-Signature-256`), so this also checks those.
 */
export function githubSignature(body: string | Buffer, secret: string): string {
  return `sha256=${giteaSignature(body, secret)}`;
}

/** Gitea's, Forgejo's and Gogs' `X-Gitea-Signature`: the bare hex HMAC-SHA256 of the body (of the JSON, for a form). */
export function giteaSignature(body: string | Buffer, secret: string): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}

/** One commit status request as a fake forge saw it, with what was wrong with it (empty: it matched the documented shape). */
export interface SeenStatus {
  at: number;
  method: string;
  /** The raw request path (still URL-encoded). */
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
  problems: string[];
  /** What was answered; 0 while hanging (never answered). */
  status: number;
}

export interface FakeForge {
  /** Base URL of the server (`http://127.0.0.1:<port>`): the forge's web address. */
  url: string;
  /** Its API root: `<url>/api/v3`, `/api/v1` or `/api/v4` (GitHub Enterprise, Gitea, GitLab). */
  api: string;
  seen: SeenStatus[];
  /** Requests whose body has arrived, answered or not yet (`seen` has them once answered). */
  readonly received: number;
  /** The next `count` valid requests are answered `status` (default 500), then 201 again. */
  failNext(count: number, status?: number): void;
  /** The next `count` valid requests are answered `ms` later (a slow forge: what it applies last is what a commit shows). */
  delayNext(count: number, ms: number): void;
  /** From now on requests are read, recorded and never answered (a forge that hangs). */
  hang(): void;
  close(): Promise<void>;
}

export interface FakeForgeOptions {
  provider: 'github' | 'gitea' | 'gitlab';
  token: string;
}

const STATES = {
  github: ['error', 'failure', 'pending', 'success'],
  gitea: ['pending', 'success', 'error', 'failure', 'warning'],
  gitlab: ['pending', 'running', 'success', 'failed', 'canceled', 'skipped'],
} as const;

const FIELDS = {
  github: ['state', 'target_url', 'description', 'context'],
  gitea: ['state', 'target_url', 'description', 'context'],
  gitlab: ['state', 'ref', 'name', 'context', 'target_url', 'description', 'coverage', 'pipeline_id'],
} as const;

const SHA = '[0-9a-f]{40}';
const PATHS = {
  github: new RegExp(`^(?:/api/v3)?/repos/[^/]+/[^/]+/statuses/${SHA}$`),
  gitea: new RegExp(`^/api/v1/repos/[^/]+/[^/]+/statuses/${SHA}$`),
  gitlab: new RegExp(`^/api/v4/projects/[^/]+/statuses/${SHA}$`),
};

/**
 * A local HTTP server standing in for a forge's commit status API, for
 * tests. Each request is checked against the forge's documented shape:
 * GitHub `POST /repos/{owner}/{repo}/statuses/{sha}` (Authorization
 * `token`/`Bearer`, a GitHub media type in Accept, a User-Agent), Gitea
 * `POST /api/v1/repos/{owner}/{repo}/statuses/{sha}` (Authorization
 * `token`), GitLab `POST /api/v4/projects/{url-encoded path}/statuses/{sha}`
 * (PRIVATE-TOKEN): a JSON body with only the documented fields, a `state`
 * the forge knows, a `description` within 140 characters, an http(s)
 * `target_url`. A request that does not match is answered 4xx, as the
 * forge would, and its problems are kept in `seen`.
 */
export async function startFakeForge(options: FakeForgeOptions): Promise<FakeForge> {
  const seen: SeenStatus[] = [];
  let failures: Array<number> = [];
  let delays: Array<number> = [];
  let hanging = false;
  let received = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received++;
      const text = Buffer.concat(chunks).toString('utf8');
      const { body, problems, status: refusal } = check(options, req, text);
      if (hanging) {
        seen.push({ at: Date.now(), method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, problems, status: 0 });
        return;
      }
      const status = refusal ?? failures.shift() ?? 201;
      const delay = refusal === undefined ? delays.shift() ?? 0 : 0;
      // Recorded when answered: the order of `seen` is the order the forge applied them in.
      setTimeout(() => {
        seen.push({ at: Date.now(), method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, problems, status });
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(status === 201 ? { id: seen.length, ...body } : { message: problems.join('; ') || 'server error' }));
      }, delay);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const suffix = { github: '/api/v3', gitea: '/api/v1', gitlab: '/api/v4' }[options.provider];
  return {
    url,
    api: `${url}${suffix}`,
    seen,
    get received() {
      return received;
    },
    failNext(count, status = 500) {
      failures = Array.from({ length: count }, () => status);
    },
    delayNext(count, ms) {
      delays = Array.from({ length: count }, () => ms);
    },
    hang() {
      hanging = true;
    },
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function check(options: FakeForgeOptions, req: IncomingMessage, text: string): { body: Record<string, unknown>; problems: string[]; status?: number } {
  const { provider, token } = options;
  const problems: string[] = [];
  let status: number | undefined;
  const refuse = (code: number, problem: string) => {
    problems.push(problem);
    status ??= code;
  };
  const path = req.url ?? '';
  if (req.method !== 'POST') refuse(405, `method ${req.method}, not POST`);
  if (!PATHS[provider].test(path)) refuse(404, `path ${path} is not the status endpoint`);
  if (provider === 'gitlab' && !/\/projects\/[^/]*%2F/i.test(path)) refuse(404, 'project path is not URL-encoded');

  const auth = req.headers.authorization;
  if (provider === 'gitlab') {
    if (req.headers['private-token'] !== token) refuse(401, 'PRIVATE-TOKEN missing or wrong');
  } else if (auth !== `token ${token}` && auth !== `Bearer ${token}`) {
    refuse(401, 'Authorization is not "token <token>" (or Bearer)');
  }
  if (provider === 'github') {
    if (!/application\/vnd\.github/.test(String(req.headers.accept))) refuse(415, 'Accept is not a GitHub media type');
    if (!req.headers['user-agent']) refuse(403, 'no User-Agent (GitHub refuses those)');
  }
  if (!/^application\/json\b/.test(String(req.headers['content-type']))) refuse(415, `Content-Type ${req.headers['content-type']}`);

  let body: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
    else refuse(400, 'body is not a JSON object');
  } catch {
    refuse(400, 'body is not JSON');
  }
  const allowed: readonly string[] = FIELDS[provider];
  for (const key of Object.keys(body)) if (!allowed.includes(key)) refuse(422, `unknown field ${key}`);
  if (!(STATES[provider] as readonly unknown[]).includes(body.state)) refuse(422, `state ${JSON.stringify(body.state)} is not one of ${STATES[provider].join(', ')}`);
  if (body.description !== undefined && (typeof body.description !== 'string' || Array.from(body.description).length > 140)) refuse(422, 'description is not a string of at most 140 characters');
  if (body.target_url !== undefined && (typeof body.target_url !== 'string' || !/^https?:\/\/\S+$/.test(body.target_url))) refuse(422, 'target_url is not an http(s) URL');
  const label = provider === 'gitlab' ? body.name ?? body.context : body.context;
  if (label !== undefined && (typeof label !== 'string' || label.length === 0 || label.length > 255)) refuse(422, 'context/name is not a short string');
  if (provider === 'gitlab' && body.ref !== undefined && typeof body.ref !== 'string') refuse(400, 'ref is not a string');
  return { body, problems, status };
}
