// The peer: @octokit/webhooks' own Node middleware (what Probot and most Node webhook apps
// build on) on a plain Node HTTP server whose handler only verifies and emits. No queue, no
// dedupe, no record: what the receiver is compared with in the same run.
import { createServer } from 'node:http';
import { Webhooks, createNodeMiddleware } from '@octokit/webhooks';

const [port, secret] = process.argv.slice(2);
const webhooks = new Webhooks({ secret });
webhooks.on('push', () => {});
const middleware = createNodeMiddleware(webhooks, { path: '/hooks/github', log: { debug() {}, info() {}, warn() {}, error() {} } });
createServer(middleware).listen(Number(port), '127.0.0.1', () => process.stdout.write(`listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
