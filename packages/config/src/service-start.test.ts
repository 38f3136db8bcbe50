import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { serviceStart } from './service-start.js';

describe('serviceStart', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-service-'));
  const good = join(dir, 'good.yml');
  const bad = join(dir, 'bad.yml');
  writeFileSync(good, 'receiver: { port: 4000 }\n');
  writeFileSync(bad, 'receiver: { port: x }\n');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const run = (argv: string[], env: Record<string, string> = {}) => {
    const out = new PassThrough();
    const err = new PassThrough();
    const result = serviceStart({ name: 'slipway-thing', summary: 'Does a thing.', argv, env, io: { stdout: out, stderr: err }, flags: { concurrency: { type: 'string' } }, help: { concurrency: 'how many' } });
    return { result, stdout: String(out.read() ?? ''), stderr: String(err.read() ?? '') };
  };

  it.each([
    [['--config', good], null],
    [['--help'], 0],
    [['--config'], 2],
    [['--config', ''], 2],
    [['--colour'], 2],
    [['extra'], 2],
    [['--config', bad], 2],
    [['--config', join(dir, 'missing.yml')], 2],
  ])('%j → %s', (argv, exitCode) => {
    const { result } = run(argv);
    if (exitCode === null) expect(result).toMatchObject({ config: { receiver: { port: 4000 } } });
    else expect(result).toEqual({ exitCode });
  });

  it('takes the service\'s own flags and $SLIPWAY_CONFIG', () => {
    const { result } = run(['--concurrency', '3'], { SLIPWAY_CONFIG: good });
    expect(result).toMatchObject({ flags: { concurrency: '3' }, config: { receiver: { port: 4000 } } });
  });

  it('for a process that talks to a swarm\'s manager, an engine certificate it cannot read is a bad config (2) naming its key', () => {
    const swarm = join(dir, 'swarm.yml');
    writeFileSync(join(dir, 'ca.pem'), 'x');
    writeFileSync(swarm, 'engine: { type: swarm, manager: "tcp://127.0.0.1:2376", registry: "127.0.0.1:5000", tls: { ca: ca.pem, cert: cert.pem, key: key.pem } }\n');
    const err = new PassThrough();
    const start = (readsEngineFiles: boolean) => serviceStart({ name: 'slipway-thing', summary: '', argv: ['--config', swarm], env: {}, io: { stdout: new PassThrough(), stderr: err }, readsEngineFiles });
    expect(start(true)).toEqual({ exitCode: 2 });
    expect(String(err.read())).toBe(`${swarm}: engine.tls.cert: cannot read ${join(dir, 'cert.pem')} (ENOENT)\n${swarm}: engine.tls.key: cannot read ${join(dir, 'key.pem')} (ENOENT)\n`);
    // The receiver, given the same file, never reads them.
    expect(start(false)).toMatchObject({ config: { engine: { type: 'swarm' } } });
  });

  it('prints the usage for bad flags and one clear line for a bad config', () => {
    expect(run(['--colour']).stderr).toMatch(/^slipway-thing: Unknown option '--colour'\nusage: slipway-thing \[--config PATH\] \[--concurrency CONCURRENCY\]/);
    expect(run(['--config', bad]).stderr).toBe(`${bad}: receiver.port: expected a port 1-65535, got "x"\n`);
  });
});
