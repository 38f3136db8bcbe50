import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES } from '@slipway/core/logger';
import { UnavailableError } from '@slipway/core/slipway-error';
import { BuildError } from './build-error.js';
import { BuildStream, type BuildEvent, type BuildStep, jsonLines } from './build-stream.js';

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
    const failure = progress.failure() as BuildError;
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

  it.each([
    ['a registry\'s rate limit', 'toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading', UnavailableError],
    ['a registry that cannot be found', 'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 127.0.0.53:53: no such host', UnavailableError],
    ['a registry that does not answer in time', 'Get "https://registry.example.com/v2/": net/http: TLS handshake timeout', UnavailableError],
    ['a full disk', 'failed to register layer: write /var/lib/docker/overlay2/x/diff/usr/lib/libc.so: no space left on device', UnavailableError],
    ['a base image that does not exist', 'pull access denied for nosuch/image, repository does not exist or may require \'docker login\'', BuildError],
    ['a tag that does not exist', 'manifest for node:99 not found: manifest unknown: manifest unknown', BuildError],
    ['a step that failed on its own network trouble', "The command '/bin/sh -c curl https://example.com: no such host' returned a non-zero code: 6", BuildError],
  ])('%s: the host\'s failure (UnavailableError, retried) or the commit\'s (BuildError)', (_name, error, type) => {
    const { failure } = run([{ stream: 'Step 1/3 : FROM node:20\n' }, { errorDetail: { message: error }, error }]);
    expect(failure).toBeInstanceOf(type);
    if (type === UnavailableError) expect([failure!.retryable, failure!.fault, failure!.message]).toEqual([true, 'slipway', `Step 1/3 : FROM node:20 failed: ${error}`]);
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

const MB = 1024 * 1024;

/** Docker's stream of a huge line: `stream` events of 32 KB (what its builder sends at most per read), no newline in any. */
function* hugeLine(bytes: number, unit = 'a-'): Generator<BuildEvent> {
  const chunk = unit.repeat(16 * 1024);
  for (let sent = 0; sent < bytes; sent += chunk.length) yield { stream: chunk.slice(0, Math.min(chunk.length, bytes - sent)) };
}

describe('BuildStream on hostile output', () => {
  const collect = (secrets?: string[]) => {
    const lines: string[] = [];
    const progress = new BuildStream({ onLine: (line) => lines.push(line), secrets });
    return { lines, progress };
  };

  it('a 64 MB line with no newline: bounded, in linear time, cut with its size', () => {
    const { lines, progress } = collect();
    const started = performance.now();
    progress.push({ stream: 'Step 2/3 : RUN sh /build-output.sh\n' });
    for (const event of hugeLine(64 * MB)) progress.push(event);
    progress.push({ stream: '\nafter the huge line\n' });
    progress.end();
    expect(performance.now() - started).toBeLessThan(2000);
    expect(lines).toEqual(['Step 2/3 : RUN sh /build-output.sh', `${'a-'.repeat(MAX_LINE_BYTES / 2)}… [line cut: 67,108,864 bytes]`, 'after the huge line']);
  });

  it('a huge line the build never ends: cut at the next step boundary, or at the end of the stream', () => {
    const { lines, progress } = collect();
    for (const event of hugeLine(MB)) progress.push(event);
    progress.push({ stream: ' ---> 1234567890ab\n' });
    for (const event of hugeLine(MB)) progress.push(event);
    progress.end();
    const cut = `${'a-'.repeat(MAX_LINE_BYTES / 2)}… [line cut: 1,048,576 bytes]`;
    expect(lines).toEqual([cut, ' ---> 1234567890ab', cut]);
  });

  it('a failing step\'s output kept for its error is cut too', () => {
    const { progress } = collect();
    progress.push({ stream: 'Step 1/1 : RUN x\n' });
    for (const event of hugeLine(4 * MB)) progress.push(event);
    progress.push({ stream: '\n' });
    progress.push({ error: `The command '/bin/sh -c x' returned a non-zero code: 1` });
    const failure = progress.failure() as BuildError;
    expect(failure.output).toEqual([`${'a-'.repeat(MAX_LINE_BYTES / 2)}… [line cut: 4,194,304 bytes]`]);
  });

  it('scrubs a secret, even one the cut goes through', () => {
    const secret = 'hunter2-webhook-secret';
    const { lines, progress } = collect([secret]);
    progress.push({ stream: `token ${secret}\n` });
    progress.push({ stream: `${'x'.repeat(MAX_LINE_BYTES - 4)}${secret}${'y'.repeat(MB)}\n` });
    progress.push({ stream: 'https://bob:pw1234@example.com/x.git\n' });
    progress.end();
    expect(lines[0]).toBe('token ***');
    expect(lines[1]!.startsWith(`${'x'.repeat(MAX_LINE_BYTES - 4)}***`)).toBe(true);
    expect(lines[1]).not.toContain('hunt');
    expect(lines[2]).toBe('https://***@example.com/x.git');
  });

  it('a million short lines in 8 KB events: every one, in order, in seconds', () => {
    const { lines, progress } = collect();
    let text = '';
    for (let i = 1; i <= 1_000_000; i++) text += `${i}\n`;
    const started = performance.now();
    for (let i = 0; i < text.length; i += 8192) progress.push({ stream: text.slice(i, i + 8192) });
    progress.end();
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(lines.length).toBe(1_000_000);
    expect(lines.at(-1)).toBe('1000000');
    expect(lines.every((line, i) => line === String(i + 1))).toBe(true);
  });
});

describe('jsonLines on hostile input', () => {
  it('one 64 MB message arriving in 64 KB chunks: left out with a notice, in linear time, and the stream goes on', async () => {
    const started = performance.now();
    async function* chunks() {
      yield Buffer.from('{"stream":"');
      const chunk = Buffer.alloc(64 * 1024, 'a');
      for (let i = 0; i < 1024; i++) yield chunk;
      yield Buffer.from('"}\r\n{"stream":"next\\n"}\r\n');
    }
    const out: unknown[] = [];
    for await (const event of jsonLines(chunks())) out.push(event);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(out).toEqual([{ stream: '[a message of 67,108,878 bytes from Docker was left out]\n' }, { stream: 'next\n' }]);
  });

  it('a character split across two chunks arrives whole', async () => {
    const bytes = Buffer.from('{"stream":"café ☕\\n"}\n');
    const at = bytes.indexOf(0xc3) + 1;
    const out: unknown[] = [];
    for await (const event of jsonLines(Readable.from([bytes.subarray(0, at), bytes.subarray(at)]))) out.push(event);
    expect(out).toEqual([{ stream: 'café ☕\n' }]);
  });

  it('holds the step it is on, not every one a build prints: a RUN printing "Step 1/1 : …" lines costs no memory per line', () => {
    const progress = new BuildStream();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 20_000; i++) progress.push({ stream: `Step ${i + 1}/20000 : ${'x'.repeat(16_000)}\n ---> Using cache\n` });
    global.gc?.();
    expect(progress.currentStep).toMatchObject({ index: 20_000, total: 20_000, cached: true });
    expect(progress.cachedSteps).toBe(20_000);
    expect(Object.values(progress).some((v) => Array.isArray(v) && v.length > 1000), 'no list grows with the steps').toBe(false);
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(100 * 1024 * 1024);
  });
});

