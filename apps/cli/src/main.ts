import { ConfigError } from '@slipway/config/load-config';
import { isSlipwayError, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { CliContext, UsageError } from './cli-context.js';
import { processTerminal, type Terminal } from './terminal.js';
import { deploy, DEPLOY_USAGE, rollback, ROLLBACK_USAGE, router, ROUTER_USAGE, status, STATUS_USAGE } from './app-commands.js';
import { remote, REMOTE_USAGE } from './git-hook.js';
import { cancel, CANCEL_USAGE, jobs, JOBS_USAGE, logs, LOGS_USAGE, retry, RETRY_USAGE } from './job-commands.js';

type Command = (ctx: CliContext, argv: string[]) => Promise<number>;

const COMMANDS: Record<string, { run: Command; usage: string; summary: string }> = {
  deploy: { run: deploy, usage: DEPLOY_USAGE, summary: 'queue a deploy (--image: skip the build)' },
  rollback: { run: rollback, usage: ROLLBACK_USAGE, summary: 'back to an earlier release, no rebuild' },
  status: { run: status, usage: STATUS_USAGE, summary: 'release, containers, upstreams, health' },
  jobs: { run: jobs, usage: JOBS_USAGE, summary: 'recent jobs' },
  logs: { run: logs, usage: LOGS_USAGE, summary: "a job's log, live with --follow" },
  retry: { run: retry, usage: RETRY_USAGE, summary: 're-run failed jobs' },
  cancel: { run: cancel, usage: CANCEL_USAGE, summary: 'stop a waiting or running job' },
  router: { run: router, usage: ROUTER_USAGE, summary: "etcd -> nginx, watching (confd's role)" },
  remote: { run: remote, usage: REMOTE_USAGE, summary: 'bare repo whose push deploys' },
};

export const USAGE = `usage: slipway [--config PATH] <command> [options]

${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`).join('\n')}

Global options: --config PATH (else $SLIPWAY_CONFIG, else ./slipway.yml), --json.
Exit status: 0 success, 1 the operation failed, 2 usage or configuration error.`;

/** Runs one command line; returns the exit status. Never throws. */
export async function main(argv: string[], env: NodeJS.ProcessEnv, terminal: Terminal = processTerminal): Promise<number> {
  const rest: string[] = [];
  let configPath: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--config' || arg === '-c') {
      configPath = argv[++i];
      if (configPath === undefined) return usageFailure(terminal, '--config needs a path', USAGE);
    } else if (arg.startsWith('--config=')) configPath = arg.slice('--config='.length);
    // Global, so before the command too (`slipway --json jobs`); each command reads it from the context.
    else if (arg === '--json') json = true;
    else rest.push(arg);
  }
  const [name, ...args] = rest;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    // Asked for, it is the answer (stdout, 0); without a command, it says how to give one (stderr, 2), as a usage error.
    if (name === undefined) terminal.err(USAGE);
    else terminal.out(USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) return usageFailure(terminal, `unknown command ${JSON.stringify(name)}`, USAGE);
  if (args.includes('--help') || args.includes('-h')) {
    terminal.out(command.usage);
    return 0;
  }
  const ctx = new CliContext({ configPath, env, json }, terminal);
  try {
    return await command.run(ctx, args);
  } catch (err) {
    return report(terminal, err, command.usage);
  } finally {
    await ctx.close().catch(() => {});
  }
}

function usageFailure(terminal: Terminal, message: string, usage: string): number {
  terminal.err(`slipway: ${message}\n${usage}`);
  return 2;
}

/** Request errors about what Slipway's state holds, not about the command line: exit 1. */
const NOT_FOUND_IN_STATE: ReadonlySet<string> = new Set(['unknown_job', 'unknown_ref', 'ambiguous_ref', 'release_not_found']);

function report(terminal: Terminal, err: unknown, usage: string): number {
  if (err instanceof UsageError) return usageFailure(terminal, err.message, err.usage);
  if (err instanceof ConfigError) {
    terminal.err(err.message);
    return 2;
  }
  if (err instanceof UnavailableError) {
    terminal.err(`slipway: ${err.message.split('\n')[0]}`);
    return 1;
  }
  // What the command line names but the state lacks (a job, a ref, a release to go back to): the operation failed.
  // Wrong on its face (a bad flag or value, an app the configuration lacks): a usage or configuration error.
  if (isSlipwayError(err) && err.fault === 'request' && !NOT_FOUND_IN_STATE.has(err.code)) {
    terminal.err(`slipway: ${err.message}${err.code === 'unknown_app' ? '' : `\n${usage}`}`);
    return 2;
  }
  if (err instanceof SlipwayError) {
    terminal.err(`slipway: ${err.message}`);
    return 1;
  }
  const message = err instanceof Error ? err.message : String(err);
  terminal.err(`slipway: ${message.split('\n')[0]}`);
  if (process.env.SLIPWAY_DEBUG && err instanceof Error) terminal.err(err.stack ?? '');
  return 1;
}
