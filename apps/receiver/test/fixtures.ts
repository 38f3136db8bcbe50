import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

interface Definition { name: string; examples: Array<Record<string, unknown>> }
const definitions = createRequire(import.meta.url)('@octokit/webhooks-examples') as Definition[];

/** The examples of one GitHub event from @octokit/webhooks-examples (fresh copies). */
export function githubExamples(event: string): Array<Record<string, unknown>> {
  const found = definitions.find((d) => d.name === event);
  if (!found) throw new Error(`no @octokit/webhooks-examples for ${event}`);
  return structuredClone(found.examples);
}

/** The push example of a branch (refs/heads/master of Codertocat/Hello-World). */
export function githubBranchPush(): Record<string, unknown> {
  return githubExamples('push').find((e) => e.ref === 'refs/heads/master')!;
}

/** A payload copied from a forge's documentation (see test/fixtures/README.md). */
export function docFixture(name: 'gitea-push' | 'gitlab-push' | 'gitlab-tag-push'): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), 'utf8')) as Record<string, unknown>;
}

/** The apps every receiver test configures: each repository of the fixtures, with its own secret. */
export const SECRETS = {
  hello: 'hello-secret-Vb3kQ9',
  develop: 'develop-secret-Yt7pW2',
  pings: 'pings-secret-Ns4xK1',
  gitea: 'gitea-secret-Jh8mR5',
  gitlab: 'gitlab-token-Qz6cL0',
  tags: 'tags-token-Wd2fB7',
} as const;

export const TEST_APPS = {
  hello: { repo: 'https://github.com/Codertocat/Hello-World.git', branch: 'master', secret: SECRETS.hello },
  'hello-worker': { repo: 'git@github.com:codertocat/hello-world', branch: 'master', secret: SECRETS.hello },
  'hello-develop': { repo: 'https://github.com/Codertocat/Hello-World', branch: 'develop', secret: SECRETS.develop },
  pings: { repo: 'https://github.com/Octocoders/Hello-World.git', branch: 'master', secret: SECRETS.pings },
  webhooks: { repo: 'ssh://git@localhost:2222/gitea/webhooks.git', branch: 'develop', secret: SECRETS.gitea },
  diaspora: { repo: 'http://example.com/mike/diaspora.git', branch: 'master', secret: SECRETS.gitlab },
  example: { repo: 'git@example.com:jsmith/example.git', branch: 'master', secret: SECRETS.tags },
};
