import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { pack } from 'tar-fs';

/** The base image every fixture builds on; there is no registry to pull from. */
export const BASE_IMAGE = 'slipway/busybox:latest';
const BUSYBOX = '/bin/busybox';
const LABEL = 'slipway.busybox.sha256';

/**
 * Makes `slipway/busybox:latest` with `docker import` from a root
 * filesystem assembled out of Debian's busybox-static: one static binary,
 * a link per applet, /etc/passwd and /tmp. Reused while the binary is the same.
 */
export async function ensureBaseImage(docker = new Docker()): Promise<string> {
  const binary = readFileSync(BUSYBOX);
  const digest = createHash('sha256').update(binary).digest('hex');
  const existing = await docker.getImage(BASE_IMAGE).inspect().catch(() => null);
  if (existing?.Config?.Labels?.[LABEL] === digest) return BASE_IMAGE;

  const root = mkdtempSync(join(tmpdir(), 'slipway-rootfs-'));
  try {
    for (const dir of ['bin', 'etc', 'tmp', 'www', 'proc', 'sys', 'dev']) mkdirSync(join(root, dir));
    chmodSync(join(root, 'tmp'), 0o1777);
    copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
    chmodSync(join(root, 'bin/busybox'), 0o755);
    const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox');
    for (const applet of applets) symlinkSync('busybox', join(root, 'bin', applet));
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    const stream = await docker.importImage(pack(root) as unknown as string, {
      repo: 'slipway/busybox',
      tag: 'latest',
      changes: [`LABEL ${LABEL}=${digest}`, 'ENV PATH=/bin', 'CMD ["sh"]'],
    } as Record<string, unknown>);
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(stream, (err: Error | null, events: Array<{ error?: string }>) => {
        const failure = err?.message ?? events.find((e) => e.error)?.error;
        if (failure) reject(new Error(`docker import failed: ${failure}`));
        else resolve();
      });
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return BASE_IMAGE;
}
