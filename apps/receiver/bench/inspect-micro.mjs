// Where inspectWebhook's time goes on one signed 8 KB GitHub push, beside what
// @octokit/webhooks' middleware does for the same body (HMAC + JSON.parse):
// node apps/receiver/bench/inspect-micro.mjs (after npm run build).
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { isUtf8 } from 'node:buffer';
import { inspectWebhook, readWebhookHeaders } from '@slipway/forges/inspect-webhook';

const require = createRequire(import.meta.url);
const SECRET = 'bench-webhook-secret-0123456789';
const example = structuredClone(require('@octokit/webhooks-examples').find((d) => d.name === 'push').examples.find((e) => e.ref === 'refs/heads/master'));
const name = 'bench/app-1';
Object.assign(example.repository, { full_name: name, name: 'app-1', html_url: `https://github.com/${name}`, clone_url: `https://github.com/${name}.git`, ssh_url: `git@github.com:${name}.git`, git_url: `git://github.com/${name}.git` });
example.head_commit.message = '';
example.head_commit.message = 'x'.repeat(8192 - Buffer.byteLength(JSON.stringify(example)));
const text = JSON.stringify(example);
const body = Buffer.from(text);
const signature = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
const apps = Array.from({ length: 200 }, (_, i) => ({ name: `app-${i}`, repo: `https://github.com/bench/app-${i}.git`, branch: 'master', secret: SECRET }));
const headers = readWebhookHeaders('github', { 'x-github-event': ['push'], 'x-github-delivery': ['d-1'], 'x-hub-signature-256': [signature] });

async function time(label, n, fn) {
  for (let i = 0; i < 2000; i++) await fn(i);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn(i);
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  console.log(`${label.padEnd(48)} ${us.toFixed(1).padStart(7)} µs`);
  return us;
}
const N = Number(process.env.N ?? 20000);
await time('inspectWebhook (whole)', N, () => inspectWebhook({ headers, media: 'json', body, apps }));
await time('  isUtf8', N, () => isUtf8(body));
await time('  utf8 decode', N, () => body.toString('utf8'));
await time('  HMAC-SHA256 of the text', N, () => createHmac('sha256', SECRET).update(text).digest('hex'));
await time('  JSON.parse', N, () => JSON.parse(text));
await time('octokit-like: HMAC of text + JSON.parse', N, () => { createHmac('sha256', SECRET).update(text).digest('hex'); JSON.parse(text); });
if (process.env.PARTS) {
  const { decodeWebhookBody } = await import('../../../packages/forges/dist/webhook-body.js');
  const { matchApps } = await import('../../../packages/forges/dist/match-apps.js');
  const { verifySignature } = await import('../../../packages/forges/dist/verify-signature.js');
  const { readPushFields, normalisePush } = await import('../../../packages/forges/dist/normalise-push.js');
  const decoded = decodeWebhookBody('github', 'json', body);
  await time('  decodeWebhookBody (scan)', N, () => decodeWebhookBody('github', 'json', body));
  await time('  matchApps', N, () => matchApps(apps, decoded.identity));
  await time('  verifySignature', N, () => verifySignature(headers, text, SECRET));
  const payload = JSON.parse(text);
  await time('  readPushFields', N, () => readPushFields('github', payload));
  const fields = readPushFields('github', payload);
  await time('  normalisePush', N, () => normalisePush('github', 'd-1', fields));
}
if (process.env.PARTS) {
  const { configuredRepository, hostOf } = await import('../../../packages/forges/dist/forge-address.js');
  const forges = { github: {}, gitea: {}, gitlab: {} };
  const urls = ['clone_url', 'ssh_url', 'html_url', 'git_url'].map((field) => example.repository[field]);
  await time('  configuredRepository + hostOf of its 4 URLs', N, () => { configuredRepository(apps[1], 'github', forges, name); for (const u of urls) hostOf(u); });
}
