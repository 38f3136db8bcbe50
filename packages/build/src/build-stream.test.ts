import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BuildError } from './build-error.js';
import { BuildStream, type BuildEvent, type BuildStep } from './build-stream.js';
import { jsonLines } from './json-lines.js';

/** Streams recorded from Docker 20.10's classic builder building the fixture app. */
const recorded = (name: string) => readFileSync(new URL(`../test/fixtures/${name}.ndjson`, import.meta.url), 'utf8');

async function replay(text: string, chunkSize = 7): Promise<{ progress: BuildStream; lines: string[]; steps: BuildStep[] }> {
  const lines: string[] = [];
  const steps: BuildStep[] = [];
  const progress = new BuildStream({ onLine: (line) => lines.push(line), onStep: (step) => steps.push({ ...step }) });
  // Odd chunk sizes split JSON objects across reads, as a socket does.
  const chunks: Buffer[] = [];
  for (let i = 0; i < text.length; i += chunkSize) chunks.push(Buffer.from(text.slice(i, i + chunkSize)));
  for await (const event of jsonLines<BuildEvent>(Readable.from(chunks))) progress.push(event);
  progress.end();
  return { progress, lines, steps };
}

describe('BuildStream on recorded builds', () => {
  it('a first build: steps, no cache, the image id, every line', async () => {
    const { progress, lines, steps } = await replay(recorded('build-ok'));
    expect(progress.failure()).toBeNull();
    expect(progress.finished).toBe(true);
    expect(progress.imageId).toMatch(/^sha256:814b91bb0f51/);
    expect(progress.totalSteps).toBe(6);
    expect(progress.cachedSteps).toBe(0);
    expect(steps.map((s) => `${s.index}/${s.total} ${s.instruction}`)).toEqual([
      '1/6 FROM slipway/busybox:latest', '2/6 COPY www /www', '3/6 COPY run.sh /run.sh', '4/6 EXPOSE 8080', '5/6 CMD ["/run.sh"]', '6/6 LABEL slipway.app=x',
    ]);
    expect(lines[0]).toBe('Step 1/6 : FROM slipway/busybox:latest');
    expect(lines).toContain(' ---> 70bf009730c7');
    expect(lines.at(-1)).toBe('Successfully tagged slipway/trec-0:aaa');
  });

  it('a rebuild of the same tree: every step after FROM from the cache', async () => {
    const { progress } = await replay(recorded('build-cached'));
    expect(progress.failure()).toBeNull();
    expect(progress.cachedSteps).toBe(5);
    expect(progress.totalSteps).toBe(6);
  });

  it('a failing RUN step: the error names the step and carries its output, colour codes removed', async () => {
    const { progress, lines } = await replay(recorded('build-broken'), 13);
    expect(progress.finished).toBe(false);
    const failure = progress.failure();
    expect(failure).toBeInstanceOf(BuildError);
    expect(failure!.code).toBe('build_failed');
    expect(failure!.message.split('\n')).toEqual([
      'Step 2/7 : RUN echo "compiling assets" && echo "error: asset pipeline failed" >&2 && false failed (exit 1)',
      'compiling assets',
      'error: asset pipeline failed',
    ]);
    expect(failure!.step).toEqual({ index: 2, total: 7, instruction: 'RUN echo "compiling assets" && echo "error: asset pipeline failed" >&2 && false' });
    expect(failure!.exitCode).toBe(1);
    expect(lines).toContain('error: asset pipeline failed');
    expect(lines.at(-1)).toContain('returned a non-zero code: 1');
  });
});

describe('BuildStream on hand-made events', () => {
  const run = (events: BuildEvent[], tailLines?: number) => {
    const lines: string[] = [];
    const progress = new BuildStream({ onLine: (line) => lines.push(line), tailLines });
    for (const event of events) progress.push(event);
    progress.end();
    return { progress, lines, failure: progress.failure() };
  };

  it.each([
    {
      name: 'an error outside any step',
      events: [{ errorDetail: { message: 'Cannot locate specified Dockerfile: Dockerfile' }, error: 'Cannot locate specified Dockerfile: Dockerfile' }],
      first: 'docker build failed: Cannot locate specified Dockerfile: Dockerfile',
    },
    {
      name: 'a COPY of a missing file: no exit code, Docker\'s reason on the first line',
      events: [
        { stream: 'Step 1/3 : FROM slipway/busybox:latest\n' },
        { stream: 'Step 2/3 : COPY nope /nope\n' },
        { error: 'COPY failed: file not found in build context or excluded by .dockerignore: stat nope: file does not exist' },
      ],
      first: 'Step 2/3 : COPY nope /nope failed: COPY failed: file not found in build context or excluded by .dockerignore: stat nope: file does not exist',
    },
    {
      name: 'BuildKit\'s wording of an exit code',
      events: [{ stream: 'Step 3/5 : RUN npm run assets\n' }, { stream: 'boom\n' }, { error: 'process "/bin/sh -c npm run assets" did not complete successfully: exit code: 2' }],
      first: 'Step 3/5 : RUN npm run assets failed (exit 2)',
    },
    {
      name: 'a very long instruction is cut on the first line',
      events: [{ stream: `Step 1/1 : RUN ${'x'.repeat(300)}\n` }, { error: "The command '/bin/sh -c xxx' returned a non-zero code: 127" }],
      first: `Step 1/1 : RUN ${'x'.repeat(155)}… failed (exit 127)`,
    },
  ])('$name', ({ events, first }) => {
    const { failure } = run(events);
    expect(failure?.message.split('\n')[0]).toBe(first);
  });

  it('keeps only the last output lines of the failing step, and none of the steps before', () => {
    const events: BuildEvent[] = [{ stream: 'Step 1/2 : RUN echo early\nearly output\n' }, { stream: ' ---> abc\nStep 2/2 : RUN build\n' }];
    for (let i = 1; i <= 50; i++) events.push({ stream: `line ${i}\n` });
    events.push({ error: "The command '/bin/sh -c build' returned a non-zero code: 1" });
    const { failure } = run(events, 3);
    expect(failure!.message.split('\n')).toEqual(['Step 2/2 : RUN build failed (exit 1)', 'line 48', 'line 49', 'line 50']);
  });

  it('splits carriage returns and joins a line split across events, but not across a step boundary', () => {
    const { lines, progress } = run([
      { stream: 'Step 1/2 : RUN x\n' },
      { stream: 'progress 10%\rprogress 100%\r\n' },
      { stream: 'half a ' },
      { stream: 'line\nno newline at the end' },
      { stream: ' ---> 123\n' },
      { stream: 'Step 2/2 : CMD x\n' },
      { stream: 'tail without newline' },
    ]);
    expect(lines).toEqual(['Step 1/2 : RUN x', 'progress 10%', 'progress 100%', 'half a line', 'no newline at the end', ' ---> 123', 'Step 2/2 : CMD x', 'tail without newline']);
    expect(progress.finished).toBe(false);
  });

  it('shows pull status lines but not progress bars', () => {
    const { lines } = run([
      { status: 'Pulling from library/node', id: '20' },
      { status: 'Downloading', progress: '[==>   ] 1MB/9MB', id: 'abc' },
      { status: 'Pull complete', id: 'abc' },
    ]);
    expect(lines).toEqual(['20: Pulling from library/node', 'abc: Pull complete']);
  });
});

describe('jsonLines', () => {
  it('yields objects split across chunks and keeps lines that are not JSON', async () => {
    const chunks = ['{"stream":"a', '"}\r\n{"aux"', ':{"ID":"x"}}\nnot json\n', '{"stream":"last"}'];
    const out: unknown[] = [];
    for await (const event of jsonLines(Readable.from(chunks))) out.push(event);
    expect(out).toEqual([{ stream: 'a' }, { aux: { ID: 'x' } }, { stream: 'not json\n' }, { stream: 'last' }]);
  });
});
