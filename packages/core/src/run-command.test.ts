import { describe, expect, it } from 'vitest';
import { CommandError, runCommand } from './run-command.js';
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

  it('says when a command does not exist', async () => {
    await expect(runCommand(['slipway-no-such-command'])).rejects.toThrow('command not found');
  });

  it('kills a command that runs past its timeout', async () => {
    const started = Date.now();
    await expect(runCommand(['sleep', '5'], { timeoutMs: 200 })).rejects.toThrow(CommandError);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe('scrubSecrets', () => {
  it('removes URL credentials and known secret values', () => {
    expect(scrubSecrets('fatal: https://bob:hunter22@git.example.com/x.git not found', ['tok3n-value']))
      .toBe('fatal: https://***@git.example.com/x.git not found');
    expect(scrubSecrets('token tok3n-value leaked', ['tok3n-value'])).toBe('token *** leaked');
  });
});
