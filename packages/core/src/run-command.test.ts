import { describe, expect, it } from 'vitest';
import { CommandError, isProcessAlive, runCommand, type RunOptions } from './run-command.js';
import { scrubSecrets } from './logger.js';

describe('runCommand', () => {
  it('passes arguments verbatim, with no shell to interpret them', async () => {
    const hostile = '$(touch /tmp/slipway-pwned); `id` && echo pwned';
    const { stdout } = await runCommand(['printf', '%s', hostile]);
    expect(stdout).toBe(hostile);
  });

  it('streams lines as they come and reports failures with their tail', async () => {
    const lines: string[] = [];
    const err = await runCommand(['sh', '-c', 'echo one; echo two >&2; exit 3'], { onLine: (l) => lines.push(l) }).catch((e) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err.exitCode).toBe(3);
    expect(err.tail).toContain('two');
    expect(lines.sort()).toEqual(['one', 'two']);
  });

  it('decodes a character whose bytes come in two chunks whole', async () => {
    const lines: string[] = [];
    // "é" is C3 A9: the pipe hands them over a moment apart.
    const { stdout } = await runCommand(['sh', '-c', "printf '\\303'; sleep 0.2; printf '\\251\\n\\303'"], { onLine: (l) => lines.push(l) });
    expect(stdout).toBe('é\n\uFFFD');
    expect(lines).toEqual(['é', '\uFFFD']);
  });

  it('says when a command does not exist', async () => {
    await expect(runCommand(['slipway-no-such-command'])).rejects.toThrow('command not found');
  });

  it('kills a command that runs past its timeout', async () => {
    const started = Date.now();
    await expect(runCommand(['sleep', '5'], { timeoutMs: 200 })).rejects.toThrow(CommandError);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  /** Runs `sh` starting a `sleep` of its own, and waits until it says the sleep's pid. */
  async function withGrandchild(options: RunOptions): Promise<{ run: Promise<unknown>; grandchild: number }> {
    let said: (pid: number) => void;
    const pid = new Promise<number>((resolve) => (said = resolve));
    const run = runCommand(['sh', '-c', 'sleep 30 & echo $!; wait'], { ...options, onLine: (line) => said(Number(line)) }).catch((e: unknown) => e);
    return { run, grandchild: await pid };
  }

  it('past its timeout, kills what the command started too, and answers at the timeout (not when the rest ends)', async () => {
    const started = Date.now();
    const { run, grandchild } = await withGrandchild({ timeoutMs: 300 });
    const err = await run;
    expect(Date.now() - started).toBeLessThan(3000);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as Error).message).toContain('was killed after 0.3 s (its timeout)');
    await expect.poll(() => isProcessAlive(grandchild), { timeout: 2000 }).toBe(false);
  });

  it('cancelled, stops the command and what it started, saying it was cancelled', async () => {
    const abort = new AbortController();
    const { run, grandchild } = await withGrandchild({ signal: abort.signal });
    const aborted = Date.now();
    abort.abort();
    const err = await run;
    expect(Date.now() - aborted).toBeLessThan(2000);
    expect((err as Error).message).toContain('was stopped: cancelled');
    await expect.poll(() => isProcessAlive(grandchild), { timeout: 2000 }).toBe(false);
    await expect(runCommand(['true'], { signal: abort.signal })).rejects.toThrow('was not run: cancelled');
  });

  it('answers once the command exits, though a process it left running holds its output', async () => {
    const started = Date.now();
    const { stdout } = await runCommand(['sh', '-c', 'sleep 20 & echo left; exit 0']);
    expect(stdout).toBe('left\n');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a command that exits without reading its input fails or succeeds by its exit alone', async () => {
    await expect(runCommand(['true'], { input: 'x'.repeat(4_000_000) })).resolves.toMatchObject({ code: 0 });
  });

  it('kills a command that prints without end, past MAX_OUTPUT_BYTES', async () => {
    const lines: number[] = [];
    await expect(runCommand(['sh', '-c', 'while :; do printf "%01000d" 0; done'], { onLine: (l) => lines.push(l.length) })).rejects.toThrow('printed more than 32 MB');
    expect(Math.max(...lines)).toBeLessThanOrEqual(64 * 1024);
  });
});

describe('scrubSecrets', () => {
  it('removes URL credentials and known secret values', () => {
    expect(scrubSecrets('fatal: https://bob:hunter22@git.example.com/x.git not found', ['tok3n-value']))
      .toBe('fatal: https://***@git.example.com/x.git not found');
    expect(scrubSecrets('token tok3n-value leaked', ['tok3n-value'])).toBe('token *** leaked');
  });
});
