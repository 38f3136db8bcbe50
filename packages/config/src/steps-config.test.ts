import { describe, expect, it } from 'vitest';
import { SlipwayError } from '@slipway/core/slipway-error';
import { parseConfig, parseRepositoryFile } from './load-config.js';

const FILE = '/etc/slipway/slipway.yml';
const app = 'apps:\n  hello:\n    repo: https://github.com/acme/hello.git\n';
const SHA = 'abcdef0123456789abcdef0123456789abcdef01';

function configProblems(text: string): string {
  try {
    parseConfig(text, { file: FILE, env: {} });
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('config was accepted');
}

function repositoryFileError(text: string): SlipwayError {
  try {
    parseRepositoryFile(text, SHA);
  } catch (err) {
    expect(err).toBeInstanceOf(SlipwayError);
    return err as SlipwayError;
  }
  throw new Error('repository file was accepted');
}

describe('apps.<app>.steps', () => {
  it('is absent unless set (the repository file decides), and [] when set empty (the repository file is ignored)', () => {
    expect(parseConfig(app, { file: FILE, env: {} }).apps.hello!.steps).toBeUndefined();
    expect(parseConfig(`${app}    steps: []\n`, { file: FILE, env: {} }).apps.hello!.steps).toEqual([]);
  });

  it('takes name, argv command, image, env (interpolated) and timeout_s, with timeout_s 600 by default', () => {
    const text = `${app}    steps:\n      - name: unit\n        command: [npm, test]\n        env: { CI: "true", NPM_TOKEN: "\${NPM_TOKEN}" }\n      - name: lint.js\n        command: [npx, eslint, .]\n        image: node:20\n        timeout_s: 30\n`;
    const steps = parseConfig(text, { file: FILE, env: { NPM_TOKEN: 'npm-token-value' } }).apps.hello!.steps;
    expect(steps).toEqual([
      { name: 'unit', command: ['npm', 'test'], env: { CI: 'true', NPM_TOKEN: 'npm-token-value' }, timeout_s: 600 },
      { name: 'lint.js', command: ['npx', 'eslint', '.'], image: 'node:20', env: {}, timeout_s: 30 },
    ]);
  });

  it.each([
    ['a shell string as command', '- name: t\n  command: npm test', 'apps.hello.steps[0].command: expected an argv list (never a shell string), got "npm test"'],
    ['an empty command', '- name: t\n  command: []', 'apps.hello.steps[0].command: expected an argv list (never a shell string) with at least 1 item, got an empty list'],
    ['no name', '- command: [true]', 'apps.hello.steps[0].name: is required (a step name)'],
    ['a name with a space', '- name: unit tests\n  command: [true]', 'apps.hello.steps[0].name: expected a step name, got "unit tests"'],
    ['two steps of one name', '- name: t\n  command: [a]\n- name: t\n  command: [b]', 'apps.hello.steps[1].name: "t" names an earlier step too'],
    ['an unknown key', '- name: t\n  command: [true]\n  shell: bash', 'apps.hello.steps[0].shell: unknown key (expected one of: name, command, image, env, timeout_s)'],
    ['an image like an option', '- name: t\n  command: [true]\n  image: --privileged', 'apps.hello.steps[0].image: expected an image reference, got "--privileged"'],
    ['a timeout of 0', '- name: t\n  command: [true]\n  timeout_s: 0', 'apps.hello.steps[0].timeout_s: expected an integer 1-86400, got 0'],
  ])('refuses %s, naming the key path', (_what, steps, problem) => {
    const text = `${app}    steps:\n${steps.split('\n').map((l) => `      ${l}`).join('\n')}\n`;
    expect(configProblems(text)).toContain(`${FILE}: ${problem}`);
  });
});

describe('a repository .slipway.yml', () => {
  it('holds steps in the same shape; an empty file holds none', () => {
    expect(parseRepositoryFile('steps:\n  - name: unit\n    command: [sh, -c, "make test"]\n', SHA)).toEqual({
      steps: [{ name: 'unit', command: ['sh', '-c', 'make test'], env: {}, timeout_s: 600 }],
    });
    expect(parseRepositoryFile('', SHA)).toEqual({ steps: [] });
  });

  it('is never interpolated: ${VAR} stays as the pusher wrote it', () => {
    const { steps } = parseRepositoryFile('steps:\n  - name: leak\n    command: [echo, "${HOME}", "${SLIPWAY_DASHBOARD_TOKEN}"]\n    env: { X: "${PATH}" }\n', SHA);
    expect(steps[0]).toMatchObject({ command: ['echo', '${HOME}', '${SLIPWAY_DASHBOARD_TOKEN}'], env: { X: '${PATH}' } });
  });

  it.each([
    ['a key other than steps', 'steps: []\ndeploy: { replicas: 9 }\n', 'deploy: unknown key (expected one of: steps)'],
    ['a step without a command', 'steps:\n  - name: unit\n', 'steps[0].command: is required'],
    ['something that is not a mapping', '- name: unit\n', '(top level): expected a mapping'],
    ['broken YAML', 'steps: [\n', 'YAML:'],
    ['a file of nested aliases (billion laughs)', `a: &a ["x","x","x","x","x","x","x","x","x"]\n${Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`).join('\n')}\nsteps: []\n`, 'YAML:'],
  ])('refuses %s as the commit\'s fault, naming the key path and the commit', (_what, text, problem) => {
    const err = repositoryFileError(text);
    expect(err.code).toBe('repository_file_invalid');
    expect(err.fault).toBe('commit');
    expect(err.message.split('\n', 1)[0]).toContain(`.slipway.yml of commit ${SHA.slice(0, 12)}: ${problem}`);
  });
});
