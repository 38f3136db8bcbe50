import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packContext, selectContext, type ContextEntry } from './build-context.js';

const tree = (...paths: string[]): ContextEntry[] => paths.map((p) => (p.endsWith('/') ? { path: p.slice(0, -1), directory: true } : { path: p, directory: false }));

const files = tree('.git', 'Dockerfile', '.dockerignore', 'app.js', 'debug.log', 'node_modules/', 'node_modules/x/', 'node_modules/x/i.js',
  'secret/', 'secret/key.pem', 'secret/README', 'docs/', 'docs/a.md', 'docker/', 'docker/web.Dockerfile', 'src/', 'src/debug.log');

describe('selectContext', () => {
  it.each([
    {
      name: 'no .dockerignore: everything but .git',
      ignore: null,
      dockerfile: 'Dockerfile',
      expected: ['.dockerignore', 'Dockerfile', 'app.js', 'debug.log', 'docker', 'docker/web.Dockerfile', 'docs', 'docs/a.md', 'node_modules', 'node_modules/x', 'node_modules/x/i.js', 'secret', 'secret/README', 'secret/key.pem', 'src', 'src/debug.log'],
    },
    {
      name: 'patterns as Docker reads them (root-anchored globs, whole directories)',
      ignore: 'node_modules\n*.log\nsecret\n',
      dockerfile: 'Dockerfile',
      expected: ['.dockerignore', 'Dockerfile', 'app.js', 'docker', 'docker/web.Dockerfile', 'docs', 'docs/a.md', 'src', 'src/debug.log'],
    },
    {
      name: 'an exception inside an excluded directory',
      ignore: 'secret\n!secret/README\n**/*.log\n',
      dockerfile: 'Dockerfile',
      expected: ['.dockerignore', 'Dockerfile', 'app.js', 'docker', 'docker/web.Dockerfile', 'docs', 'docs/a.md', 'node_modules', 'node_modules/x', 'node_modules/x/i.js', 'secret', 'secret/README', 'src'],
    },
    {
      name: 'the Dockerfile and .dockerignore are sent even when listed',
      ignore: 'docker\n.dockerignore\nDockerfile\n*\n',
      dockerfile: 'docker/web.Dockerfile',
      expected: ['.dockerignore', 'docker', 'docker/web.Dockerfile'],
    },
    {
      name: '.git cannot be brought back',
      ignore: '!.git\n',
      dockerfile: 'Dockerfile',
      expected: expect.not.arrayContaining(['.git']),
    },
  ])('$name', ({ ignore, dockerfile, expected }) => {
    expect(selectContext(files, ignore, dockerfile)).toEqual(expected);
  });
});

describe('a commit\'s .dockerignore', () => {
  const commit = (files: Record<string, string>, link?: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-context-'));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    if (link) symlinkSync(link, join(dir, '.dockerignore'));
    return dir;
  };
  const refusal = async (dir: string) => {
    try {
      return await packContext(dir, 'Dockerfile').then(() => null, (err: unknown) => err as { code: string; message: string; fault: string });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('is read only as a regular file of bounded size: a link to /dev/zero or the worker\'s files is the commit\'s failure', async () => {
    expect(await refusal(commit({ Dockerfile: 'FROM x\n' }, '/dev/zero'))).toMatchObject({ code: 'build_failed', fault: 'commit', message: 'docker build failed: .dockerignore is a symbolic link out of the commit\'s tree (or to nothing); only its own files are read' });
    expect(await refusal(commit({ Dockerfile: 'FROM x\n' }, '/etc/passwd'))).toMatchObject({ code: 'build_failed' });
    expect(await refusal(commit({ Dockerfile: 'FROM x\n', '.dockerignore': '#'.repeat(1024 * 1024 + 1) }))).toMatchObject({ code: 'build_failed', message: expect.stringContaining('at most 1,048,576 are read') });
  });

  it('follows a link to a file of the commit, as docker build does (.dockerignore -> .gitignore)', async () => {
    const dir = commit({ Dockerfile: 'FROM x\n', '.gitignore': 'secret.txt\n', 'secret.txt': 'x', 'app.js': '' }, '.gitignore');
    try {
      const context = await packContext(dir, 'Dockerfile');
      expect(context.paths).toEqual(['.dockerignore', '.gitignore', 'Dockerfile', 'app.js']);
      // Read to its end before the tree goes: the tar stream reads the files lazily.
      for await (const chunk of context.stream) expect(chunk).toBeDefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names a pattern Docker cannot read by its line, not its text', async () => {
    expect(await refusal(commit({ Dockerfile: 'FROM x\n', '.dockerignore': 'node_modules\n\nsecret-[token\n' }))).toMatchObject({ code: 'build_failed', fault: 'commit', message: 'docker build failed: .dockerignore line 3 is not a pattern Docker can read' });
  });
});

describe('the build context\'s bound', () => {
  const tree = (files: Record<string, string | number>) => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-context-'));
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), typeof content === 'number' ? Buffer.alloc(content) : content);
    return dir;
  };
  const packed = async (dir: string, limits: Parameters<typeof packContext>[2]) => {
    try {
      const context = await packContext(dir, 'Dockerfile', limits);
      for await (const chunk of context.stream) expect(chunk).toBeDefined();
      return { paths: context.paths, bytes: context.bytes };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('counts the files .dockerignore leaves in, and refuses a context over the bound before packing it', async () => {
    const files = { Dockerfile: 'FROM x\n', '.dockerignore': 'big.bin\n', 'big.bin': 600_000, 'app.bin': 300_000 };
    // big.bin is left out: 7 + 8 + 300,000 bytes.
    expect(await packed(tree(files), { maxBytes: 400_000 })).toEqual({ paths: ['.dockerignore', 'Dockerfile', 'app.bin'], bytes: 300_015 });
    const refused = await packed(tree({ ...files, '.dockerignore': '' }), { maxBytes: 400_000, setting: 'apps.hello.build_context_max_mb' }).catch((err: unknown) => err);
    expect(refused).toMatchObject({ code: 'build_failed', fault: 'commit', message: expect.stringMatching(/^docker build failed: the build context is 0\.9 MiB, more than the 0\.4 MiB allowed \(apps\.hello\.build_context_max_mb\); leave out/) });
  });

  it('refuses a tree of more paths than it lists', async () => {
    const files = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`f${i}`, 'x']));
    expect(await packed(tree({ Dockerfile: 'FROM x\n', ...files }), { maxEntries: 11 })).toMatchObject({ bytes: 17 });
    expect(await packed(tree({ Dockerfile: 'FROM x\n', ...files }), { maxEntries: 10 }).catch((err: unknown) => err)).toMatchObject({ code: 'build_failed', message: expect.stringContaining('more than 10 files and directories') });
  });
});
