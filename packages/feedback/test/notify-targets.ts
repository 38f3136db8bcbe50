import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { githubSignature } from '@slipway/devstack/testing';

export interface Received {
  headers: IncomingHttpHeaders;
  raw: Buffer;
  body: Record<string, unknown>;
  /** For a signed webhook: whether the signature verified with the receiver's secret. */
  verified?: boolean;
}

export interface NotifyTarget {
  url: string;
  received: Received[];
  close(): Promise<void>;
}

/**
 * A Slack-compatible incoming webhook: takes `{text, blocks?}` JSON, answers
 * `ok` (as Slack does), and 400 `invalid_payload` for anything else.
 */
export function startSlack(): Promise<NotifyTarget> {
  return serve((req) => {
    const { body } = req;
    const ok = /^application\/json/.test(String(req.headers['content-type'])) && typeof body.text === 'string' && body.text.length > 0
      && (body.blocks === undefined || Array.isArray(body.blocks)) && Object.keys(body).every((k) => ['text', 'blocks'].includes(k));
    return ok ? [200, 'ok'] : [400, 'invalid_payload'];
  });
}

/**
 * A receiver of Slipway's signed webhooks, verifying them the way a user's
 * code would: HMAC-SHA256 of the raw body with the shared secret, compared
 * in constant time with `X-Slipway-Signature-256`; 401 when it does not match.
 */
export function startSignedReceiver(secret: string): Promise<NotifyTarget> {
  return serve((req) => {
    const header = String(req.headers['x-slipway-signature-256'] ?? '');
    const expected = Buffer.from(githubSignature(req.raw, secret));
    const given = Buffer.from(header);
    req.verified = given.length === expected.length && timingSafeEqual(given, expected);
    return req.verified ? [204, ''] : [401, 'bad signature'];
  });
}

async function serve(answer: (req: Received) => [number, string]): Promise<NotifyTarget> {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      } catch {
        // Left empty: the answer says so.
      }
      const entry: Received = { headers: req.headers, raw, body };
      const [status, text] = req.method === 'POST' ? answer(entry) : [405, 'POST only'];
      received.push(entry);
      res.writeHead(status, { 'content-type': 'text/plain' }).end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/services/T000/B000/XXXXSECRETPATH`,
    received,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
