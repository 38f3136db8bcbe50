import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { ancestors, findExecutable, processesUnder, spawnService, startProcess, stopProcess, waitFor } from './processes.js';
import { tempDir } from './testing.js';

describe('spawnService', () => {
  const scratch = tempDir();
  afterAll(() => scratch.remove());

  it('finds a service in /usr/sbin when PATH, as a non-root user\'s often is, lacks it', async () => {
    const path = '/usr/local/bin:/usr/bin:/bin';
    expect(findExecutable('nginx', path)).toMatch(/^\/(usr\/(local\/)?)?sbin\/nginx$/);
    const log = join(scratch.path, 'nginx-version.log');
    spawnService(['nginx', '-v'], log, { ...process.env, PATH: path });
    await waitFor('nginx -v in its log', () => /nginx version/.test(readFileSync(log, 'utf8')));
  });

  it('names a missing binary in a thrown error, and nothing else is raised later', async () => {
    expect(() => spawnService(['slipway-no-such-service'], join(scratch.path, 'missing.log'))).toThrow(/slipway-no-such-service not found: not on PATH .* nor in \/usr\/local\/sbin, \/usr\/sbin, \/sbin/);
    // Node would report a failed spawn as an 'error' event on a later tick: vitest fails the run on an unhandled one.
    await sleep(100);
  });
});

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

describe('processesUnder', () => {
  const scratch = tempDir();
  afterAll(() => scratch.remove());

  it('finds what was started from or works in a directory, but not a shell only working there, nor what runs this process', async () => {
    const dir = join(scratch.path, 'stack');
    mkdirSync(dir);
    // A service named by its argv; one found by its working directory (as redis is); a person's shell that cd'd there.
    const elsewhere = spawn('sleep', ['30'], { cwd: '/' });
    const named = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', `${dir}/service.conf`], { cwd: '/' });
    const working = spawn('sleep', ['30'], { cwd: dir });
    const shell = spawn('sh', ['-c', 'sleep 30; true'], { cwd: dir });
    // Started detached, as services are: a session of its own without a terminal.
    const detached = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', `${dir}/detached.conf`], { cwd: '/', detached: true, stdio: 'ignore' });
    // A person reading a log in another terminal: `script` runs it in a session of its own, on a terminal of its own.
    writeFileSync(join(dir, 'service.log'), '');
    // (The log's path reaches tail through the environment, so that only tail's argv names it, not script's.)
    const reader = spawn('script', ['-q', '-c', 'exec tail -f "$LOG"', '/dev/null'], { cwd: '/', stdio: ['pipe', 'ignore', 'ignore'], env: { ...process.env, LOG: join(dir, 'service.log') } });
    const pids = [elsewhere, named, working, shell, detached, reader].map((c) => c.pid!);
    try {
      const tail = await waitFor('the reader\'s tail', () => readdirSync('/proc').find((p) => /^\d+$/.test(p) && readText(`/proc/${p}/cmdline`).startsWith(`tail\0-f\0${dir}/`)));
      await waitFor('the shell\'s sleep', () => processesUnder(dir).length >= 4);
      const found = processesUnder(dir);
      expect(found).toContain(named.pid);
      expect(found).toContain(working.pid);
      expect(found).toContain(detached.pid);
      expect(found, 'a shell working there').not.toContain(shell.pid);
      expect(found, 'not under it at all').not.toContain(elsewhere.pid);
      expect(found, 'a person\'s tail -f in another terminal').not.toContain(Number(tail));
      expect(ancestors().has(process.ppid)).toBe(true);
    } finally {
      await Promise.all(pids.map((pid) => stopProcess(pid, 2_000)));
    }
  });
});

describe('startProcess', () => {
  it('a binary that cannot run ends with 127 and says why, and raises nothing', async () => {
    const run = startProcess(['slipway-no-such-binary', '--flag']);
    expect(await run.exited).toBe(127);
    expect(run.output()).toMatch(/^cannot run slipway-no-such-binary: spawn slipway-no-such-binary ENOENT/);
    expect(await run.stop()).toBe(127);
  });

  it('keeps only the end of its output when told to (npm start\'s processes run for days)', async () => {
    const run = startProcess(['sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" x; echo; echo last'], { keepChars: 1000 });
    expect(await run.exited).toBe(0);
    expect(run.output().length).toBeLessThanOrEqual(1000);
    expect(run.output()).toMatch(/x\nlast\n$/);
  });
});
