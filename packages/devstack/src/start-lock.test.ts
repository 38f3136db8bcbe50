import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { processStart, runCommand } from '@slipway/core/run-command';
import { tempDir } from './testing.js';
import { AlreadyRunningError, claimStart } from './start-lock.js';
import { isAlive, startProcess } from './processes.js';
import { ensureDemoRepo, recordChildren, stopLeftChildren } from './up.js';

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

describe("the bootstrap's install lock (scripts/install-lock.mjs): one install and build at a time per checkout", () => {
  const lockModule = new URL('../../../scripts/install-lock.mjs', import.meta.url).href;
  const dir = tempDir('slipway-install-lock-');
  afterAll(() => dir.remove());
  /** A bootstrap that takes the lock, holds it `holdMs`, and prints when it got it (ms since its start). */
  const bootstrap = (file: string, holdMs: number) => {
    const code = `const t0 = Date.now(); const { holdInstallLock } = await import(${JSON.stringify(lockModule)});
      holdInstallLock(${JSON.stringify(file)}, (line) => console.log('said: ' + line));
      console.log('got it after ' + (Date.now() - t0)); setTimeout(() => {}, ${holdMs});`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<string>((resolve) => child.on('exit', () => resolve(output)));
    return { child, exited, output: () => output };
  };

  it('a second waits, saying for whom, until the first is done; the lock goes with the last', async () => {
    const file = join(dir.path, 'two.lock');
    const first = bootstrap(file, 1500);
    while (!first.output().includes('got it')) await new Promise((r) => setTimeout(r, 20));
    const second = await bootstrap(file, 0).exited;
    expect(second).toContain(`said: another npm start or npm test (pid ${first.child.pid}) is installing and building this checkout; waiting for it`);
    expect(Number(/got it after (\d+)/.exec(second)![1])).toBeGreaterThan(1000);
    await first.exited;
    expect(existsSync(file)).toBe(false);
  });

  it('takes over at once the lock of a bootstrap that was killed', async () => {
    const file = join(dir.path, 'killed.lock');
    const killed = bootstrap(file, 60_000);
    while (!killed.output().includes('got it')) await new Promise((r) => setTimeout(r, 20));
    killed.child.kill('SIGKILL');
    await killed.exited;
    expect(existsSync(file)).toBe(true);
    const next = await bootstrap(file, 0).exited;
    expect(next).not.toContain('said:');
    expect(Number(/got it after (\d+)/.exec(next)![1])).toBeLessThan(1000);
  });
});

describe("npm start's processes, left running by a start that was killed", () => {
  const dir = tempDir('slipway-children-');
  afterAll(() => dir.remove());

  it('are stopped by the next start: the ones recorded, still the same processes; a pid used since by another is left alone', async () => {
    const worker = startProcess(['sleep', '60']);
    const router = startProcess(['sleep', '60']);
    const unrelated = startProcess(['sleep', '60']);
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      recordChildren(dir.path, [['worker', worker], ['router', router]]);
      // The router's pid, recorded at another start time: another process that has its pid now.
      const file = join(dir.path, 'children.json');
      const records = JSON.parse(readFileSync(file, 'utf8')) as Array<{ name: string; pid: number; start: string }>;
      writeFileSync(file, JSON.stringify([...records, { name: 'dashboard', pid: unrelated.child.pid, start: '1' }]));
      const lines: string[] = [];
      expect(await stopLeftChildren(dir.path, (line) => lines.push(line))).toBe(2);
      expect([isAlive(worker.child.pid), isAlive(router.child.pid), isAlive(unrelated.child.pid)]).toEqual([false, false, true]);
      expect(lines).toEqual([
        `stopping the worker (pid ${worker.child.pid}) an earlier npm start left running when it was killed`,
        `stopping the router (pid ${router.child.pid}) an earlier npm start left running when it was killed`,
      ]);
      expect(existsSync(file)).toBe(false);
      expect(await stopLeftChildren(dir.path, () => {})).toBe(0);
    } finally {
      for (const p of [worker, router, unrelated]) await p.stop('SIGKILL');
    }
  });
});

describe('ensureDemoRepo: the demo app\'s repository, whole whatever an earlier start left', () => {
  const dirs: Array<{ path: string; remove(): void }> = [];
  afterAll(() => {
    for (const dir of dirs.splice(0)) dir.remove();
  });
  const demoDir = () => {
    const dir = tempDir('slipway-demo-');
    dirs.push(dir);
    return dir.path;
  };
  const master = (demo: string) => runCommand(['git', '--git-dir', join(demo, 'hello.git'), 'rev-parse', 'refs/heads/master']).then((r) => r.stdout.trim());

  it('makes again a repository a killed start left without master (or a working copy without a repository), and keeps a whole one', async () => {
    // Killed between `git init --bare` and the first push.
    const torn = demoDir();
    await runCommand(['git', 'init', '-q', '--bare', join(torn, 'hello.git')]);
    mkdirSync(join(torn, 'hello-work'));
    const work = await ensureDemoRepo(torn);
    expect(await master(torn)).toMatch(/^[0-9a-f]{40}$/);
    expect(readFileSync(join(work, 'www', 'index.html'), 'utf8')).toContain('hello from Slipway v1');
    // Killed after making the working copy's directory only.
    const early = demoDir();
    mkdirSync(join(early, 'hello-work'));
    await ensureDemoRepo(early);
    expect(await master(early)).toMatch(/^[0-9a-f]{40}$/);
    // Whole, with the user's own commit: kept as it is; a working copy removed is cloned again.
    const sha = await master(torn);
    expect(await ensureDemoRepo(torn)).toBe(work);
    expect(await master(torn)).toBe(sha);
    rmSync(work, { recursive: true, force: true });
    // A bare repository whose HEAD names another branch (init.defaultBranch=main on this machine, say).
    await runCommand(['git', '--git-dir', join(torn, 'hello.git'), 'symbolic-ref', 'HEAD', 'refs/heads/main']);
    await ensureDemoRepo(torn);
    expect(readFileSync(join(work, 'www', 'index.html'), 'utf8')).toContain('hello from Slipway v1');
    expect(await master(torn)).toBe(sha);
  });
});
