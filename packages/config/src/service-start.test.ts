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

  it('prints the usage for bad flags and one clear line for a bad config', () => {
    expect(run(['--colour']).stderr).toMatch(/^slipway-thing: Unknown option '--colour'\nusage: slipway-thing \[--config PATH\] \[--concurrency CONCURRENCY\]/);
    expect(run(['--config', bad]).stderr).toBe(`${bad}: receiver.port: expected a port 1-65535, got "x"\n`);
  });
});
