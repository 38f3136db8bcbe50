#!/usr/bin/env node
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureBaseImage } from './base-image.js';
import { CLUSTER_USAGE, ClusterUsageError, clusterCommand } from './cluster/command.js';
import { assertStackFree, readStack, stackEnv, startStack, stopStack } from './stack.js';
import { TEST_PACKAGES, ensureSystemPackages } from './services.js';
import { up } from './up.js';

const USAGE = `usage: slipway-devstack <command>

  up                 start the services and all of Slipway with a demo app; Ctrl-C stops everything
  run [--tests] -- <cmd...>
                     start a temporary stack, run <cmd> with it, stop the stack, exit with <cmd>'s code;
                     --tests: install what the tests need too (chromium) before <cmd> starts
  start [--dir D]    start (or reuse) the services, print where they listen
  stop  [--dir D]    stop the services started by 'start'
                     (both refuse a stack that a running npm start or run owns)
${CLUSTER_USAGE}`;

const log = (line: string) => console.error(`[devstack] ${line}`);

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

async function run(command: string[], forTests: boolean): Promise<number> {
  if (command.length === 0) throw new UsageError('run needs a command after --');
  // From the start: a signal while packages install or the stack starts would otherwise end this process there, and
  // what had started would run on until the next run's sweep. It is forwarded to <cmd> once that runs; before, the
  // stack stops as soon as it is up, and <cmd> never runs.
  let child: ChildProcess | undefined;
  let stopping: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (child) child.kill(signal);
    else if (stopping === null) {
      stopping = signal;
      log(`${signal}: stopping once the stack is up`);
    }
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  const stopped = () => (stopping === null ? null : 128 + (SIGNAL_NUMBERS[stopping] ?? 15));
  if (forTests) ensureSystemPackages(Object.keys(TEST_PACKAGES), log);
  if (stopped() !== null) return stopped()!;
  const stack = await startStack({ log });
  try {
    if (stopped() !== null) return stopped()!;
    await ensureBaseImage();
    if (stopped() !== null) return stopped()!;
    const started = spawn(command[0]!, command.slice(1), { stdio: 'inherit', env: { ...process.env, ...stackEnv(stack) } });
    child = started;
    return await new Promise<number>((done) => {
      started.on('error', (err) => {
        log(`cannot run ${command[0]}: ${err.message}`);
        done(127);
      });
      started.on('exit', (status, signal) => done(status ?? (signal ? 128 + (SIGNAL_NUMBERS[signal] ?? 15) : 1)));
    });
  } finally {
    // Also when the base image failed and <cmd> never ran: the stack is this run's alone.
    await stopStack(stack, log);
  }
}

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({ args: rest, options: { dir: { type: 'string' } }, allowPositionals: true, strict: command !== 'run' && command !== 'cluster' });
  const dir = resolve(typeof values.dir === 'string' ? values.dir : '.slipway/stack');
  switch (command) {
    case 'run': {
      const dashes = rest.indexOf('--');
      const flags = dashes === -1 ? [] : rest.slice(0, dashes);
      const unknown = flags.find((flag) => flag !== '--tests');
      if (unknown) throw new UsageError(`unknown option ${unknown} for run`);
      return run(dashes === -1 ? positionals : rest.slice(dashes + 1), flags.includes('--tests'));
    }
    case 'up':
      return up({ log });
    case 'cluster':
      return clusterCommand(rest, log);
    case 'start': {
      const stack = await startStack({ dir, log });
      await ensureBaseImage();
      console.log(JSON.stringify(stackEnv(stack), null, 2));
      return 0;
    }
    case 'stop': {
      assertStackFree(dir);
      const stack = readStack(dir);
      if (stack) await stopStack(stack, log);
      else log(`no stack in ${dir}`);
      return 0;
    }
    default:
      throw new UsageError(command ? `unknown command ${command}` : 'no command');
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    if (err instanceof UsageError || err instanceof ClusterUsageError || (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      console.error(`slipway-devstack: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    console.error(`slipway-devstack: ${err.message}`);
    process.exit(1);
  },
);
