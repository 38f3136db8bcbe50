import { readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { ContextEntry } from './select-context.js';

/** Lists a tree, `/`-separated and relative; `.git` at the top is not entered. */
export async function listTree(root: string): Promise<ContextEntry[]> {
  const out: ContextEntry[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const abs = join(dir, entry.name);
      const path = relative(root, abs).split(sep).join('/');
      if (path === '.git') continue;
      const directory = entry.isDirectory();
      out.push({ path, directory });
      if (directory) await walk(abs);
    }
  };
  await walk(root);
  return out;
}
