import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import dockerignoreModule from '@balena/dockerignore';
import { pack } from 'tar-fs';

// A CommonJS module whose `module.exports` is the factory and `.default` the same factory:
// `.default` is what both TypeScript (NodeNext) and Node agree on.
const ignore = dockerignoreModule.default;

export interface ContextEntry {
  /** Relative to the context root, `/`-separated (`www/index.html`). */
  path: string;
  directory: boolean;
}

/**
 * Which paths of a checked-out tree go into the build context. Pure.
 * Docker's rules, as the docker CLI applies them: `.dockerignore` patterns
 * with `!` exceptions (a directory excluded as a whole is still entered
 * when an exception may match inside it); the Dockerfile and
 * `.dockerignore` are always sent, as Docker needs them even when listed.
 * Ours on top: `.git` (the checkout's worktree link) is never sent.
 */
export function selectContext(entries: readonly ContextEntry[], dockerignore: string | null, dockerfile: string): string[] {
  const rules = ignore({ ignorecase: false }).add(dockerignore ?? '');
  const always = new Set([dockerfile, '.dockerignore']);
  const included = new Set<string>();
  for (const entry of entries) {
    const path = entry.path;
    if (path === '.git' || path.startsWith('.git/')) continue;
    if (entry.directory) {
      if (!rules.ignores(path)) included.add(path);
      continue;
    }
    if (always.has(path) || !rules.ignores(path)) {
      included.add(path);
      // Parents of a file kept by an exception inside an excluded directory.
      for (let at = path.lastIndexOf('/'); at > 0; at = path.lastIndexOf('/', at - 1)) included.add(path.slice(0, at));
    }
  }
  return [...included].sort();
}

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
