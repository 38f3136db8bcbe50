// The baseline: a bare express handler answering 202, in its own process like the receiver.
import express from 'express';

const port = Number(process.argv[2]);
const app = express();
app.disable('x-powered-by');
app.set('etag', false);
app.post('/hooks/github', (_req, res) => {
  res.status(202).json({ job: '1', app: 'bench-0' });
});
app.listen(port, '127.0.0.1', () => process.stdout.write(`listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
