import { symlinkSync, writeFileSync } from 'node:fs';
import { createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, describe, expect, it } from 'vitest';
import type { StepConfig } from '@slipway/config/types';
import { LABELS } from '@slipway/core/docker';
import { MAX_LINE_BYTES } from '@slipway/core/logger';
import { SlipwayError } from '@slipway/core/slipway-error';
import { BASE_IMAGE, startWedgedPeer, tempDir, testAppName } from '@slipway/devstack/testing';
import { readRepositorySteps, repositoryStepsBudget, runStep, runSteps, stepContainerOptions, stepsForCommit, type StepRun } from '../src/steps.js';

const docker = new Docker();
const temp = tempDir('slipway-steps-');
const SHA = '0123456789abcdef0123456789abcdef01234567';

afterAll(() => temp.remove());

const step = (over: Partial<StepConfig> & Pick<StepConfig, 'command'>): StepConfig => ({ name: 'unit', env: {}, timeout_s: 60, ...over });

/** Every container of the app still on the host, running or not. */
const containersOf = (app: string) => docker.listContainers({ all: true, filters: { label: [`${LABELS.app}=${app}`] } });

async function failure(promise: Promise<unknown>): Promise<SlipwayError & { run?: StepRun }> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(SlipwayError);
    return err as SlipwayError & { run?: StepRun };
  }
  throw new Error('the step passed');
}

describe('a step container', () => {
  it('runs exactly the argv with the step env, an init, the labels and the app resources, and nothing published or mounted', () => {
    const options = stepContainerOptions({
      app: 'hello', job: '42', sha: SHA, image: 'slipway/hello:0123456789ab',
      step: step({ command: ['npm', 'run', 'test:ci'], env: { CI: 'true' } }),
      resources: { cpus: 0.5, memory_mb: 256 },
    });
    expect(options).toMatchObject({
      Image: 'slipway/hello:0123456789ab', Entrypoint: ['npm'], Cmd: ['run', 'test:ci'], Env: ['CI=true'],
      Labels: { 'slipway.app': 'hello', 'slipway.release': '42', 'slipway.step': 'unit', 'slipway.sha': SHA },
      HostConfig: { Init: true, Privileged: false, PublishAllPorts: false, PortBindings: {}, Binds: [], NanoCpus: 500_000_000, Memory: 256 * 1024 * 1024 },
    });
    expect(options.ExposedPorts).toBeUndefined();
    expect(options.HostConfig?.Mounts).toBeUndefined();
    expect(stepContainerOptions({ app: 'hello', job: '42', sha: null, image: 'x', step: step({ command: ['true'] }) }).HostConfig).not.toHaveProperty('Memory');
  });
});

describe('runStep (real Docker)', () => {
  it('passes on exit 0: its output reaches the log prefixed with its name, secret-like env values scrubbed, and its container is gone', async () => {
    const app = testAppName();
    const lines: string[] = [];
    const run = await runStep({
      docker, app, job: '1', sha: SHA, builtImage: BASE_IMAGE, log: (l) => lines.push(l),
      // The token in the command too, as `${NPM_TOKEN}` in the config's command becomes: the logged command line hides it.
      step: step({ name: 'unit', command: ['sh', '-c', 'echo "testing with CI=$CI"; echo "token is $NPM_TOKEN"; echo to-stderr >&2; ls /var/run/docker.sock || echo no-socket; true npm-secret-value-123'], env: { CI: 'yes', NPM_TOKEN: 'npm-secret-value-123' } }),
    });
    expect(run).toMatchObject({ name: 'unit', exitCode: 0, outcome: 'passed', image: BASE_IMAGE });
    expect(lines).toContain('unit | testing with CI=yes');
    expect(lines).toContain('unit | token is ***');
    expect(lines).toContain('unit | to-stderr');
    expect(lines).toContain('unit | no-socket');
    expect(lines.join('\n')).not.toContain('npm-secret-value-123');
    expect(lines.at(-1)).toMatch(/^step unit passed \(exit 0\) in \d+\.\d s$/);
    expect(await containersOf(app)).toEqual([]);
  });

  it('fails on a non-zero exit with step_failed naming the step and the code, the commit\'s fault; its container is gone', async () => {
    const app = testAppName();
    const lines: string[] = [];
    const err = await failure(runStep({ docker, app, job: '2', sha: SHA, builtImage: BASE_IMAGE, log: (l) => lines.push(l), step: step({ name: 'lint', command: ['sh', '-c', 'echo "2 problems"; exit 3'] }) }));
    expect(err.code).toBe('step_failed');
    expect(err.fault).toBe('commit');
    expect(err.message).toBe('step_failed: lint exited 3');
    expect(err.run).toMatchObject({ name: 'lint', exitCode: 3, outcome: 'failed' });
    expect(lines).toContain('lint | 2 problems');
    expect(await containersOf(app)).toEqual([]);
  });

  it('fails with step_failed, the commit\'s fault, when its command is not in the image or not executable (the init exits 127, 126), not as Docker\'s error', async () => {
    const app = testAppName();
    const lines: string[] = [];
    const missing = await failure(runStep({ docker, app, job: '2', sha: SHA, builtImage: BASE_IMAGE, log: (l) => lines.push(l), step: step({ name: 'unit', command: ['npm', 'test'] }) }));
    expect(missing.code).toBe('step_failed');
    expect(missing.fault).toBe('commit');
    expect(missing.message).toBe('step_failed: unit exited 127');
    expect(missing.run).toMatchObject({ name: 'unit', exitCode: 127, outcome: 'failed' });
    expect(lines.join('\n')).toMatch(/unit \| .*npm/);
    const notExecutable = await failure(runStep({ docker, app, job: '2', sha: SHA, builtImage: BASE_IMAGE, step: step({ name: 'e2e', command: ['/etc/passwd'] }) }));
    expect(notExecutable.code).toBe('step_failed');
    expect(notExecutable.run).toMatchObject({ exitCode: 126 });
    expect(await containersOf(app)).toEqual([]);
  });

  it('is stopped past its timeout_s with step_timeout; its container is gone', async () => {
    const app = testAppName();
    const started = Date.now();
    const err = await failure(runStep({ docker, app, job: '3', sha: SHA, builtImage: BASE_IMAGE, step: step({ name: 'slow', command: ['sleep', '60'], timeout_s: 2 }) }));
    expect(err.code).toBe('step_timeout');
    expect(err.fault).toBe('commit');
    expect(err.message).toMatch(/^step_timeout: slow ran past its timeout_s \(2 s\)/);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await containersOf(app)).toEqual([]);
  });

  it('is removed at once when cancelled', async () => {
    const app = testAppName();
    const controller = new AbortController();
    let printed: () => void;
    const running = new Promise<void>((resolve) => (printed = resolve));
    const result = failure(runStep({
      docker, app, job: '4', sha: SHA, builtImage: BASE_IMAGE, signal: controller.signal,
      log: (l) => l === 'long | started' && printed(), step: step({ name: 'long', command: ['sh', '-c', 'echo started; sleep 120'] }),
    }));
    await running;
    expect(await containersOf(app)).toHaveLength(1);
    const cancelledAt = Date.now();
    controller.abort();
    const err = await result;
    expect(err.code).toBe('cancelled');
    // Killed, not stopped within its 10 s grace, nor left to its sleep (removal alone may take seconds on a loaded machine).
    expect(Date.now() - cancelledAt).toBeLessThan(8000);
    expect(await containersOf(app)).toEqual([]);
  });

  it('fails as the commit\'s fault when its own image is not on the host and cannot be pulled', async () => {
    const app = testAppName();
    // A registry address on loopback where nothing listens: the pull fails without leaving the machine.
    const err = await failure(runStep({ docker, app, job: '5', sha: SHA, builtImage: BASE_IMAGE, step: step({ name: 'tool', command: ['true'], image: '127.0.0.1:9/nothing/here:1' }) }));
    expect(err.code).toBe('image_not_found');
    expect(err.fault).toBe('commit');
    expect(err.message).toContain('step tool: image 127.0.0.1:9/nothing/here:1 is not on the Docker host and could not be pulled');
    expect(await containersOf(app)).toEqual([]);
  });

  it('keeps a line of any length bounded: one line, cut with a marker naming its size', async () => {
    const lines: string[] = [];
    await runStep({ docker, app: testAppName(), job: '6', sha: SHA, builtImage: BASE_IMAGE, log: (l) => lines.push(l), step: step({ name: 'big', command: ['sh', '-c', 'head -c 2000000 /dev/zero | tr "\\0" x; echo; echo after'] }) });
    const big = lines.find((l) => l.startsWith('big | xxx'))!;
    expect(Buffer.byteLength(big)).toBeLessThan(MAX_LINE_BYTES + 100);
    expect(big).toMatch(/\[line cut: 2,000,000 bytes\]$/);
    expect(lines).toContain('big | after');
  });

  it('gets the app resources: a memory limit the step can read', async () => {
    const lines: string[] = [];
    await runStep({
      docker, app: testAppName(), job: '7', sha: SHA, builtImage: BASE_IMAGE, log: (l) => lines.push(l), resources: { memory_mb: 64 },
      step: step({ name: 'mem', command: ['sh', '-c', 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes'] }),
    });
    expect(lines).toContain(`mem | ${64 * 1024 * 1024}`);
  });
});

describe('runStep against an engine that never answers', () => {
  it('is stopped by a cancel and by its timeout_s at once: a wedged engine holds no app\'s lock', async () => {
    const peer = await startWedgedPeer();
    const wedged = new Docker({ host: '127.0.0.1', port: peer.port, protocol: 'http' });
    try {
      const started = Date.now();
      const cancelled = await failure(runStep({ docker: wedged, app: testAppName(), job: '9', sha: SHA, builtImage: BASE_IMAGE, signal: AbortSignal.timeout(300), step: step({ command: ['true'] }) }));
      expect(cancelled.code).toBe('cancelled');
      const timedOut = await failure(runStep({ docker: wedged, app: testAppName(), job: '9', sha: SHA, builtImage: BASE_IMAGE, step: step({ command: ['true'], timeout_s: 1 }) }));
      expect(timedOut.code).toBe('step_timeout');
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await peer.close();
    }
  }, 20_000);
});

/**
 * The machine's engine behind a proxy that forwards every call except those `wedged` picks, which it
 * accepts and never answers: an engine that stops answering after it has created the step's container.
 */
async function engineWedgedOn(wedged: (method: string, path: string) => boolean, delayMs: (method: string, path: string) => number = () => 0) {
  const configured = (docker.modem as { socketPath?: unknown }).socketPath;
  const socketPath = typeof configured === 'string' ? configured : '/var/run/docker.sock';
  const held: ServerResponse[] = [];
  const forwarded: string[] = [];
  const server = createServer((req, res) => {
    if (wedged(req.method ?? 'GET', req.url ?? '/')) {
      held.push(res);
      return;
    }
    forwarded.push(`${req.method} ${req.url}`);
    const delay = delayMs(req.method ?? 'GET', req.url ?? '/');
    const upstream = request({ socketPath, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    // Delayed: the request reaches the engine that much later, its answer with it.
    if (delay > 0) {
      req.pause();
      setTimeout(() => req.pipe(upstream), delay);
    } else {
      req.pipe(upstream);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    docker: new Docker({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, protocol: 'http' }),
    forwarded,
    async close() {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('runStep against an engine that stops answering after the create', () => {
  it('is stopped by a cancel within seconds; its container is removed at once, or by the app\'s next steps when the engine will not', async () => {
    const afterCreate = /\/containers\/[0-9a-f]{12,64}\/(attach|start|wait)/;
    const app = testAppName();
    const engine = await engineWedgedOn((_, path) => afterCreate.test(path));
    try {
      const started = Date.now();
      const cancelled = await failure(runStep({ docker: engine.docker, app, job: '11', sha: SHA, builtImage: BASE_IMAGE, signal: AbortSignal.timeout(500), step: step({ command: ['true'] }) }));
      expect(cancelled.code).toBe('cancelled');
      expect(Date.now() - started).toBeLessThan(5000);
      expect(engine.forwarded.filter((call) => /^POST \S*\/containers\/create/.test(call))).toHaveLength(1);
      // The removal still reaches the engine: nothing is left.
      expect(await containersOf(app)).toEqual([]);
    } finally {
      await engine.close();
    }

    // Removal wedged too: the container stays, and the app's next steps remove it by its labels.
    const deaf = await engineWedgedOn((method, path) => afterCreate.test(path) || (method === 'DELETE' && /\/containers\//.test(path)));
    try {
      const started = Date.now();
      const timedOut = await failure(runStep({ docker: deaf.docker, app, job: '12', sha: SHA, builtImage: BASE_IMAGE, step: step({ command: ['true'], timeout_s: 1 }) }));
      expect(timedOut.code).toBe('step_timeout');
      expect(Date.now() - started).toBeLessThan(1000 + 5000 + 2000);
      expect(await containersOf(app)).toHaveLength(1);
    } finally {
      await deaf.close();
    }
    const lines: string[] = [];
    await runSteps({ docker, app, job: '13', sha: SHA, builtImage: BASE_IMAGE, log: (l) => lines.push(l), steps: [step({ name: 'after', command: ['true'] })] });
    expect(lines[0]).toBe('removed the container of step unit left by job 12 (its worker stopped during the step)');
    expect(await containersOf(app)).toEqual([]);
  }, 30_000);
});

describe('runStep against an engine slow to create the container', () => {
  it('removes the container a cancel gave up waiting for, once the engine has made it', async () => {
    const app = testAppName();
    const engine = await engineWedgedOn(() => false, (method, path) => (method === 'POST' && /\/containers\/create/.test(path) ? 1500 : 0));
    try {
      const started = Date.now();
      const cancelled = await failure(runStep({ docker: engine.docker, app, job: '14', sha: SHA, builtImage: BASE_IMAGE, signal: AbortSignal.timeout(300), step: step({ command: ['sleep', '60'] }) }));
      expect(cancelled.code).toBe('cancelled');
      expect(Date.now() - started).toBeLessThan(1500 + 5000);
      // Past the moment the engine made it: nothing of the step stays.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + 3000 - Date.now())));
      expect(await containersOf(app)).toEqual([]);
    } finally {
      await engine.close();
    }
  }, 20_000);
});

describe('runSteps', () => {
  it('removes a step container a crashed worker left, then runs the steps in order and stops at the first failure', async () => {
    const app = testAppName();
    const left = await docker.createContainer({ Image: BASE_IMAGE, Cmd: ['sleep', '600'], Labels: { [LABELS.app]: app, [LABELS.release]: '9', [LABELS.step]: 'unit' } });
    await left.start();
    const lines: string[] = [];
    const runs: StepRun[] = [];
    const err = await failure(runSteps({
      docker, app, job: '10', sha: SHA, builtImage: BASE_IMAGE, log: (l) => lines.push(l), onRun: (r) => runs.push(r),
      steps: [step({ name: 'one', command: ['true'] }), step({ name: 'two', command: ['false'] }), step({ name: 'three', command: ['true'] })],
    }));
    expect(err.message).toBe('step_failed: two exited 1');
    expect(lines[0]).toBe('removed the container of step unit left by job 9 (its worker stopped during the step)');
    expect(runs.map((r) => `${r.name}:${r.outcome}`)).toEqual(['one:running', 'one:passed', 'two:running', 'two:failed']);
    expect(await containersOf(app)).toEqual([]);
  });

  it('with a total budget (a repository file\'s steps), a step starting with less left than its timeout gets what is left', async () => {
    const app = testAppName();
    const lines: string[] = [];
    const started = Date.now();
    const err = await failure(runSteps({
      docker, app, job: '11', sha: SHA, builtImage: BASE_IMAGE, log: (l) => lines.push(l), totalTimeoutS: 8,
      steps: [step({ name: 'one', command: ['true'], timeout_s: 60 }), step({ name: 'two', command: ['sleep', '60'], timeout_s: 60 })],
    }));
    const given = Number(/^step_timeout: two ran past its timeout_s \((\d+) s\)/.exec(err.message)?.[1]);
    expect(given, err.message).toBeGreaterThan(0);
    expect(given).toBeLessThan(8);
    expect(lines).toContain('step one: 8 s left of the 8 s the steps may take together (build_timeout_s); its timeout_s is 8');
    expect(lines).toContain(`step two: ${given} s left of the 8 s the steps may take together (build_timeout_s); its timeout_s is ${given}`);
    expect(Date.now() - started, 'not the 60 s of its own timeout').toBeLessThan(40_000);
    // Spent before a step starts: that step is not started at all.
    const spent = await failure(runSteps({ docker, app, job: '12', sha: SHA, builtImage: BASE_IMAGE, totalTimeoutS: 0, steps: [step({ name: 'late', command: ['true'] })] }));
    expect(spent.message).toBe('step_timeout: the steps ran past the 0 s they may take together (build_timeout_s) before step late');
    expect(await containersOf(app)).toEqual([]);
    expect(repositoryStepsBudget({ build_timeout_s: 1800 })).toBe(1800);
    expect(repositoryStepsBudget({ steps: [], build_timeout_s: 1800 })).toBeUndefined();
  }, 60_000);
});

describe('steps from the commit', () => {
  const tree = (files: Record<string, string>) => {
    const dir = tempDir('slipway-tree-');
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir.path, name), text);
    return dir.path;
  };

  it('reads .slipway.yml when the config sets no steps, and says so', async () => {
    const dir = tree({ '.slipway.yml': 'steps:\n  - name: unit\n    command: [make, test]\n' });
    const lines: string[] = [];
    expect(await stepsForCommit({ name: 'hello' }, dir, SHA, (l) => lines.push(l))).toEqual([{ name: 'unit', command: ['make', 'test'], env: {}, timeout_s: 600 }]);
    expect(lines).toEqual([`steps from .slipway.yml of commit ${SHA.slice(0, 12)}: unit`]);
  });

  it('gives no step of the commit\'s file a longer timeout_s than the app\'s build_timeout_s, and says so', async () => {
    const dir = tree({ '.slipway.yml': 'steps:\n  - name: soak\n    command: [make, soak]\n    timeout_s: 86400\n  - name: unit\n    command: [make, test]\n' });
    const lines: string[] = [];
    expect((await stepsForCommit({ name: 'hello', build_timeout_s: 1800 }, dir, SHA, (l) => lines.push(l))).map((s) => [s.name, s.timeout_s])).toEqual([['soak', 1800], ['unit', 600]]);
    expect(lines[0]).toBe('step soak of .slipway.yml: timeout_s 86400 is more than apps.hello.build_timeout_s allows; 1800 s');
  });

  it('refuses a step of the commit\'s file in another app\'s image (on this engine, or from a registry); this app\'s and others\' are fine', async () => {
    const file = (image: string) => tree({ '.slipway.yml': `steps:\n  - name: unit\n    command: [make, test]\n  - name: peek\n    image: "${image}"\n    command: [cat, /app/secrets]\n` });
    for (const image of ['slipway/billing:0123456789ab', 'registry.example:5000/slipway/billing:0123456789ab', 'SLIPWAY/Billing', 'slipway/billing@sha256:' + 'a'.repeat(64)]) {
      const err = await failure(stepsForCommit({ name: 'hello' }, file(image), SHA));
      expect(err.code).toBe('repository_file_invalid');
      expect(err.message).toBe(`.slipway.yml of commit ${SHA.slice(0, 12)}: steps[1].image: ${image} is a slipway/ image, another app's build (billing); a commit's steps run this app's images or others' from a registry`);
    }
    // By id, Docker finds any local image (another app's build too) from a prefix.
    for (const image of ['3fa9c1', `sha256:${'b'.repeat(64)}`]) {
      expect((await failure(stepsForCommit({ name: 'hello' }, file(image), SHA))).message).toMatch(/names an image by its id/);
    }
    for (const image of ['slipway/hello:0123456789ab', 'node:20', 'acme/slipway-tools:1', 'slipwayz/billing:1']) {
      expect((await stepsForCommit({ name: 'hello' }, file(image), SHA)).map((s) => s.image)).toEqual([undefined, image]);
    }
  });

  it('ignores it when the config sets steps (even none), with a log line; no file, no steps', async () => {
    const dir = tree({ '.slipway.yml': 'not: [valid\n' });
    const lines: string[] = [];
    expect(await stepsForCommit({ name: 'hello', steps: [] }, dir, SHA, (l) => lines.push(l))).toEqual([]);
    expect(lines).toEqual([`.slipway.yml of commit ${SHA.slice(0, 12)} is ignored: apps.hello.steps in the configuration wins`]);
    expect(await stepsForCommit({ name: 'hello' }, tree({}), SHA)).toEqual([]);
    // The other spelling alone is not read, and the log says so.
    const said: string[] = [];
    expect(await stepsForCommit({ name: 'hello' }, tree({ '.slipway.yaml': 'steps:\n  - name: unit\n    command: [make, test]\n' }), SHA, (l) => said.push(l))).toEqual([]);
    expect(said).toEqual([`.slipway.yaml of commit ${SHA.slice(0, 12)} is not read: steps are read from .slipway.yml; no steps run`]);
  });

  it('refuses a symbolic link (it could point at the worker\'s own files) and an oversized file', async () => {
    const dir = tree({});
    symlinkSync('/etc/passwd', join(dir, '.slipway.yml'));
    const link = await failure(readRepositorySteps(dir, SHA));
    expect(link.code).toBe('repository_file_invalid');
    expect(link.message).toBe(`.slipway.yml of commit ${SHA.slice(0, 12)}: is a symbolic link; only a regular file is read`);
    expect(link.message).not.toContain('root');
    const big = await failure(readRepositorySteps(tree({ '.slipway.yml': `# ${'x'.repeat(70_000)}\n` }), SHA));
    expect(big.message).toContain('at most 65,536 are read');
  });
});
