import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { isolatedNginx } from './harness.js';
import type { NginxService } from './services/nginx.js';
import type { StackState } from './stack.js';

/** The stack started by the global setup. */
export function testStack(): StackState {
  return inject('stack');
}

/**
 * A fresh app name, `t<stack id>-<random>`: unique per test, and
 * recognisable so the stack's teardown removes any container or image a
 * test left behind.
 */
export function testAppName(): string {
  return `t${testStack().id}-${randomBytes(4).toString('hex')}`;
}

/** A unique name for queues, etcd prefixes, files: `<prefix>-<random>`. */
export function uniqueName(prefix = 'test'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/**
 * A temporary directory and the function that removes it. Inside the
 * stack's directory when there is a stack, so that whatever a test starts
 * there (its own nginx, etcd, redis) is found and stopped with the stack
 * even if the test never cleans up.
 */
export function tempDir(prefix = 'slipway-test-'): { path: string; remove: () => void } {
  const stackDir = process.env.SLIPWAY_STACK_DIR;
  const parent = stackDir ? join(stackDir, 'tmp') : tmpdir();
  mkdirSync(parent, { recursive: true });
  const path = mkdtempSync(join(parent, prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * An nginx of the test's own (isolatedNginx) in a temporary directory, and
 * the `nginx:` settings of slipway.yml pointing at it; `stop()` stops it
 * and removes the directory.
 */
export async function ownNginx(): Promise<{ service: NginxService; settings: { conf_dir: string; check_cmd: string[]; reload_cmd: string[] }; stop: () => Promise<void> }> {
  const dir = tempDir('slipway-nginx-');
  const service = await isolatedNginx(dir.path);
  return {
    service,
    settings: { conf_dir: service.confDir, check_cmd: service.checkCmd, reload_cmd: service.reloadCmd },
    stop: async () => {
      await service.stop();
      dir.remove();
    },
  };
}
