import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { findExecutable, spawnService, waitFor } from './processes.js';
import { tempDir } from './testing.js';

describe('spawnService', () => {
  const scratch = tempDir();
  afterAll(() => scratch.remove());

  it('finds a service in /usr/sbin when PATH, as a non-root user\'s often is, lacks it', async () => {
    const path = '/usr/local/bin:/usr/bin:/bin';
    expect(findExecutable('nginx', path)).toBe('/usr/sbin/nginx');
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
