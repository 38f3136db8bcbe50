import { constants } from 'node:fs';
import { lstat, open, readdir, realpath } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import dockerignoreModule from '@balena/dockerignore';
import { pack } from 'tar-fs';
import { BuildError } from './build-error.js';

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
  const rules = dockerignoreRules(dockerignore ?? '');
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

/**
 * `.dockerignore`'s rules, each pattern compiled now: the library compiles
 * them at their first use and throws a bare SyntaxError quoting the pattern
 * (`a[`). A bad one is the commit's fault, named by its line, not its text.
 */
function dockerignoreRules(text: string): ReturnType<typeof ignore> {
  const rules = ignore({ ignorecase: false }).add(text);
  try {
    rules.ignores('.slipway-probe');
    return rules;
  } catch {
    const lines = text.split(/\r?\n/);
    const bad = lines.findIndex((line) => {
      try {
        ignore({ ignorecase: false }).add(line).ignores('.slipway-probe');
        return false;
      } catch {
        return true;
      }
    });
    throw new BuildError(`docker build failed: .dockerignore${bad < 0 ? '' : ` line ${bad + 1}`} is not a pattern Docker can read`);
  }
}

/**
 * A file of a checked-out commit, read with care: only a regular file (a
 * symbolic link could point at the worker's own files, or at /dev/zero;
 * with `linksInside`, one to a regular file inside the tree is followed),
 * at most `maxBytes`, and the file checked is the file read (O_NOFOLLOW).
 * Null when there is none; `refuse(why)` is thrown for anything else.
 */
export async function readCommitFile(dir: string, name: string, maxBytes: number, refuse: (why: string) => Error, options: { linksInside?: boolean } = {}): Promise<string | null> {
  let file = join(dir, name);
  let found = await lstat(file).catch(() => null);
  if (!found) return null;
  if (found.isSymbolicLink() && options.linksInside) {
    // `.dockerignore -> .gitignore`, as docker build follows it: a link to a regular file of the same tree is read.
    const [root, target] = await Promise.all([realpath(dir), realpath(file).catch(() => null)]);
    if (target === null || !target.startsWith(`${root}${sep}`)) throw refuse('is a symbolic link out of the commit\'s tree (or to nothing); only its own files are read');
    file = target;
    found = await lstat(file);
  }
  if (!found.isFile()) throw refuse(found.isSymbolicLink() ? 'is a symbolic link; only a regular file is read' : 'is not a regular file');
  if (found.size > maxBytes) throw refuse(`is ${found.size.toLocaleString('en-US')} bytes; at most ${maxBytes.toLocaleString('en-US')} are read`);
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const { buffer, bytesRead } = await handle.read({ buffer: Buffer.alloc(maxBytes + 1) });
    if (bytesRead > maxBytes) throw refuse(`is over ${maxBytes.toLocaleString('en-US')} bytes`);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

/** The most of a commit's `.dockerignore` that is read (Docker sets none; a real one is a few KB). */
export const MAX_DOCKERIGNORE_BYTES = 1024 * 1024;

/** Most paths a checked-out tree may hold, `.dockerignore`d ones included (each is listed before the rules are applied). */
export const MAX_TREE_ENTRIES = 1_000_000;

/**
 * Lists a tree, `/`-separated and relative; `.git` at the top is not
 * entered. A tree of more than `maxEntries` paths is refused (the list is
 * held in memory).
 */
export async function listTree(root: string, maxEntries = MAX_TREE_ENTRIES): Promise<ContextEntry[]> {
  const out: ContextEntry[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const abs = join(dir, entry.name);
      const path = relative(root, abs).split(sep).join('/');
      if (path === '.git') continue;
      if (out.length >= maxEntries) {
        throw new BuildError(`docker build failed: the commit's tree holds more than ${maxEntries.toLocaleString('en-US')} files and directories; at most that many are read for a build context`);
      }
      const directory = entry.isDirectory();
      out.push({ path, directory });
      if (directory) await walk(abs);
    }
  };
  await walk(root);
  return out;
}

/** Bytes of the regular files among `paths` (symbolic links are sent as links, directories as headers). */
async function filesSize(dir: string, paths: readonly string[]): Promise<number> {
  let total = 0;
  // A few at a time: a tree of many small files is a stat each.
  for (let at = 0; at < paths.length; at += 64) {
    const sizes = await Promise.all(paths.slice(at, at + 64).map((path) => lstat(join(dir, path)).then((s) => (s.isFile() ? s.size : 0))));
    for (const size of sizes) total += size;
  }
  return total;
}

const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toLocaleString('en-US', { maximumFractionDigits: 1 })} MiB`;

export interface ContextLimits {
  /** Most bytes of file content the context may carry; a larger one is refused before anything is packed. */
  maxBytes?: number;
  /** Said in the refusal: the setting that gave `maxBytes` (`apps.hello.build_context_max_mb`). */
  setting?: string;
  /** Most paths the tree may hold. Default {@link MAX_TREE_ENTRIES}. */
  maxEntries?: number;
}

/**
 * The build context of a checked-out tree as a tar stream: the paths
 * {@link selectContext} keeps, in a stable order. Symlinks are sent as
 * symlinks, as `docker build` does. Bounded: a context whose files sum to
 * more than `limits.maxBytes` fails as the commit's (`build_failed`), before
 * Docker receives a byte of it.
 */
export async function packContext(dir: string, dockerfile: string, limits: ContextLimits = {}): Promise<{ stream: Readable; paths: string[]; bytes: number }> {
  const dockerignore = await readCommitFile(dir, '.dockerignore', MAX_DOCKERIGNORE_BYTES, (why) => new BuildError(`docker build failed: .dockerignore ${why}`), { linksInside: true });
  const paths = selectContext(await listTree(dir, limits.maxEntries), dockerignore, dockerfile);
  const bytes = await filesSize(dir, paths);
  if (limits.maxBytes !== undefined && bytes > limits.maxBytes) {
    const setting = limits.setting ? ` (${limits.setting})` : '';
    throw new BuildError(`docker build failed: the build context is ${mib(bytes)}, more than the ${mib(limits.maxBytes)} allowed${setting}; leave out what the image does not need with .dockerignore`);
  }
  const keep = new Set(paths);
  const stream = pack(dir, {
    entries: paths.length > 0 ? ['.'] : [],
    ignore: (name) => !keep.has(relative(dir, name).split(sep).join('/')),
    sort: true,
  } as Parameters<typeof pack>[1]) as unknown as Readable;
  return { stream, paths, bytes };
}
