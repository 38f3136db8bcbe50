import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { processStart } from '@slipway/core/run-command';
import { tempDir } from './testing.js';
import { AlreadyRunningError, claimStart } from './start-lock.js';

describe('claimStart: one npm start per directory', () => {
  const dirs: Array<{ path: string; remove(): void }> = [];
  const others: Array<ReturnType<typeof spawn>> = [];
  afterEach(() => {
    for (const child of others.splice(0)) child.kill('SIGKILL');
    for (const dir of dirs.splice(0)) dir.remove();
  });
  const root = () => {
    const dir = tempDir('slipway-start-lock-');
    dirs.push(dir);
    return dir.path;
  };
  /** Another live process, as a running npm start would be. */
  const another = async () => {
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    others.push(child);
    await new Promise((resolve) => child.once('spawn', resolve));
    return { pid: child.pid!, start: processStart(child.pid!) };
  };

  it('refuses while another live process holds the directory, naming it, and leaves its lock alone', async () => {
    const dir = root();
    const holder = await another();
    writeFileSync(join(dir, 'up.lock'), JSON.stringify(holder));
    expect(() => claimStart(dir)).toThrow(AlreadyRunningError);
    expect(() => claimStart(dir)).toThrow(`pid ${holder.pid}`);
    expect(readdirSync(dir)).toEqual(['up.lock']);
  });

  it('takes over the lock of a process that is gone, or of a pid since reused by another process', async () => {
    const dir = root();
    const child = await another();
    writeFileSync(join(dir, 'up.lock'), JSON.stringify({ pid: child.pid, start: 'an earlier process' }));
    const claim = claimStart(dir);
    claim.release();
    expect(existsSync(join(dir, 'up.lock'))).toBe(false);
    writeFileSync(join(dir, 'up.lock'), JSON.stringify({ pid: 2 ** 22 + 1, start: '1' }));
    claimStart(dir).release();
    writeFileSync(join(dir, 'up.lock'), 'not json');
    claimStart(dir).release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('takes over past a takeover guard left by a start that died in it', () => {
    const dir = root();
    writeFileSync(join(dir, 'up.lock'), JSON.stringify({ pid: 2 ** 22 + 1, start: '1' }));
    mkdirSync(join(dir, 'up.lock.takeover'));
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(dir, 'up.lock.takeover'), old, old);
    claimStart(dir).release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('is held until released, and a release leaves a lock another process took since alone', async () => {
    const dir = root();
    const claim = claimStart(dir);
    expect(existsSync(join(dir, 'up.lock'))).toBe(true);
    const holder = await another();
    writeFileSync(join(dir, 'up.lock'), JSON.stringify(holder));
    claim.release();
    expect(existsSync(join(dir, 'up.lock')), 'not ours any more').toBe(true);
  });
});
