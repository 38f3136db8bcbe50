import dockerignoreModule from '@balena/dockerignore';

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
