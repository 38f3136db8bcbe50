import { describe, expect, it } from 'vitest';
import { selectContext, type ContextEntry } from './build-context.js';

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
