// The floor: the least any receiver must do per push, on the same stack. express, read the
// body, check its HMAC-SHA256 in constant time, JSON.parse it, claim the delivery id and keep
// the push in Redis (one command), answer 202. No validation, no logging, no queue library.
import { createHmac, timingSafeEqual } from 'node:crypto';
import express from 'express';
import { Redis } from 'ioredis';

const [port, redisUrl, secret] = process.argv.slice(2);
const redis = new Redis(redisUrl, { enableAutoPipelining: true });
const app = express();
app.disable('x-powered-by');
app.set('etag', false);
app.post('/hooks/github', (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks);
    const given = Buffer.from(String(req.headers['x-hub-signature-256']).slice(7), 'hex');
    const payload = JSON.parse(body.toString('utf8'));
    const want = createHmac('sha256', secret).update(body).digest();
    if (given.length !== want.length || !timingSafeEqual(given, want)) return void res.status(401).json({ error: 'bad_signature' });
    const ok = await redis.set(`floor:${req.headers['x-github-delivery']}`, body, 'EX', 3600, 'NX');
    res.status(ok ? 202 : 200).json({ job: '1', app: payload.repository.name });
  });
});
app.listen(Number(port), '127.0.0.1', () => process.stdout.write(`listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
