import { readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pack } from 'tar-fs';
import { listTree } from './list-tree.js';
import { selectContext } from './select-context.js';

/**
 * The build context of a checked-out tree as a tar stream: the paths
 * {@link selectContext} keeps, in a stable order. Symlinks are sent as
 * symlinks, as `docker build` does.
 */
export async function packContext(dir: string, dockerfile: string): Promise<{ stream: Readable; paths: string[] }> {
  const dockerignore = await readFile(join(dir, '.dockerignore'), 'utf8').catch(() => null);
  const paths = selectContext(await listTree(dir), dockerignore, dockerfile);
  const keep = new Set(paths);
  const stream = pack(dir, {
    entries: paths.length > 0 ? ['.'] : [],
    ignore: (name) => !keep.has(relative(dir, name).split(sep).join('/')),
    sort: true,
  } as Parameters<typeof pack>[1]) as unknown as Readable;
  return { stream, paths };
}
