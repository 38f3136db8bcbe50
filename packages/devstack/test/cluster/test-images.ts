import { chmodSync, copyFileSync, mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { pack } from 'tar-fs';

/** Waits for a dockerode progress stream (pull, push, import) and fails on its first error event. */
export function followProgress(docker: Docker, stream: NodeJS.ReadableStream): Promise<Array<Record<string, unknown>>> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, events: Array<Record<string, unknown>>) => {
      const failure = err?.message ?? (events.find((e) => e.error)?.error as string | undefined);
      if (failure) reject(new Error(failure));
      else resolve(events);
    });
  });
}

/**
 * A tiny web image made with `docker import` (there is no registry out
 * there to pull from): busybox and a /www/index.html saying `marker`.
 */
export async function importWebImage(docker: Docker, repo: string, tag: string, marker: string): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), 'slipway-cluster-image-'));
  try {
    for (const dir of ['bin', 'etc', 'tmp', 'www', 'proc', 'sys', 'dev']) mkdirSync(join(root, dir));
    copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
    chmodSync(join(root, 'bin/busybox'), 0o755);
    for (const applet of ['sh', 'httpd', 'sleep', 'wget']) symlinkSync('busybox', join(root, 'bin', applet));
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(join(root, 'www/index.html'), `${marker}\n`);
    const stream = await docker.importImage(pack(root) as unknown as string, { repo, tag, changes: ['ENV PATH=/bin', 'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]'] } as Record<string, unknown>);
    await followProgress(docker, stream);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return `${repo}:${tag}`;
}
