import { spawn, type ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdir, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { compareIps, RESOLVER_VALID_S } from './render.js';

/*
 * The DNS server of routing: dns: dnsmasq, run by `slipway router` (or
 * elsewhere, fed through its hosts directory), and what it answers.
 */

/** TTL of the answers (`--local-ttl`): as short as nginx's own `valid=`, for any other client asking. */
export const DNS_TTL_S = RESOLVER_VALID_S;
/** How long dnsmasq may take to answer after it was started. */
export const DNSMASQ_START_TIMEOUT_MS = 10_000;
/** Pause before a dnsmasq that exited by itself is started again. */
export const DNSMASQ_RESTART_MS = 1_000;
/** A dnsmasq that ran this long before it died is started again after DNSMASQ_RESTART_MS; one dying sooner, twice as late each time. */
const DNSMASQ_STABLE_MS = 10_000;
/** The longest pause between restarts of a dnsmasq that keeps dying. */
const DNSMASQ_RESTART_MAX_MS = 30_000;

export interface DnsmasqOptions {
  /** `ip:port` to answer on: `dns.server`. */
  server: string;
  /** `dns.domain`: names under it are answered from `hostsDir` only (NXDOMAIN otherwise), never forwarded. */
  domain: string;
  /** Read by dnsmasq, written by Slipway: one hosts file per app, re-read by dnsmasq (inotify) when replaced. */
  hostsDir: string;
  pidFile: string;
  /** Default `dnsmasq` (Debian's dnsmasq-base installs /usr/sbin/dnsmasq). */
  bin?: string;
  /** User dnsmasq runs as. Default: the user running Slipway (dnsmasq would switch to `nobody`, who cannot read a private hostsDir). */
  user?: string;
}

/**
 * The dnsmasq argv. Pure. Every option checked against `dnsmasq --help`
 * (2.90): in the foreground, logging to stderr; no /etc/resolv.conf, no
 * /etc/hosts, nothing forwarded anywhere; only `ip:port` of `server`;
 * answers for `<domain>` from the hosts files in `hostsDir` with a short
 * TTL. dnsmasq re-reads a file of `hostsDir` that is replaced (rename) or
 * removed, dropping its previous names (verified on 2.90); files starting
 * with `.` are ignored, so temporary files are written as `.<app>.tmp`.
 */
export function dnsmasqArgv(options: DnsmasqOptions): string[] {
  const { ip, port } = splitServer(options.server);
  return [
    options.bin ?? 'dnsmasq',
    '--keep-in-foreground',
    '--log-facility=-',
    '--no-resolv',
    '--no-hosts',
    `--listen-address=${ip}`,
    '--bind-interfaces',
    `--port=${port}`,
    `--local=/${options.domain.replace(/\.$/, '')}/`,
    `--hostsdir=${options.hostsDir}`,
    `--local-ttl=${DNS_TTL_S}`,
    `--pid-file=${options.pidFile}`,
    `--user=${options.user ?? userInfo().username}`,
  ];
}

/**
 * A dnsmasq an earlier `slipway router` started with this pid file and
 * left running (killed with -9, a supervisor that stops only its main
 * process): stopped, so that this one can answer on the address. Known by
 * its pid file and its command line naming that file, never by its port.
 */
async function stopLeftDnsmasq(pidFile: string, log: (line: string) => void): Promise<void> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.split('\0').includes(`--pid-file=${pidFile}`)) return;
  log(`dnsmasq: stopping pid ${pid}, which an earlier slipway router left running on this pid file`);
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (const deadline = Date.now() + 2000; Date.now() < deadline; await sleep(50)) {
    if (!(await readFile(`/proc/${pid}/cmdline`, 'utf8').then((text) => text === cmdline, () => false))) return;
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone meanwhile.
  }
}

export function splitServer(server: string): { ip: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(server);
  return m ? { ip: m[1]!, port: Number(m[2]) } : { ip: server, port: 53 };
}

export interface DnsmasqHandle {
  /** The running dnsmasq's pid (it changes when dnsmasq had to be restarted). */
  readonly pid: number | undefined;
  /** Stops dnsmasq (SIGTERM) and does not restart it. */
  close(): Promise<void>;
}

/**
 * Runs dnsmasq as a child of this process, for Slipway's own processes
 * (`slipway router`): resolves once it answers on `server`; restarts it
 * after DNSMASQ_RESTART_MS if it exits by itself (later and later while
 * it keeps dying at once, up to DNSMASQ_RESTART_MAX_MS); its log lines go to
 * `log`. Throws (SlipwayError `dnsmasq_failed`) when something already
 * answers on `server`, or dnsmasq cannot be started or does not answer
 * within DNSMASQ_START_TIMEOUT_MS (quoting its output).
 */
export async function runDnsmasq(options: DnsmasqOptions & { log?: (line: string) => void }): Promise<DnsmasqHandle> {
  const log = options.log ?? (() => {});
  await mkdir(options.hostsDir, { recursive: true });
  const probeName = `slipway-probe.${options.domain}`;
  await stopLeftDnsmasq(options.pidFile, log);
  // Whatever answers already would pass our readiness check while our dnsmasq exits on the busy port.
  if (await resolveHost(options.server, probeName, { timeoutMs: 200 }).then(() => true, () => false)) {
    throw new SlipwayError('dnsmasq_failed', `something already answers DNS on ${options.server}; stop it, or feed that server instead of starting dnsmasq`);
  }
  const argv = dnsmasqArgv(options);
  let child: ChildProcess | undefined;
  let closing = false;
  let tail: string[] = [];

  const start = () => {
    const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    tail = [];
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        tail = [...tail.slice(-14), line];
        log(`dnsmasq: ${line.replace(/^dnsmasq(\[\d+\])?: /, '')}`);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    const startedAt = Date.now();
    proc.on('error', (err) => log(`dnsmasq: cannot run ${argv[0]}: ${err.message}`));
    // 'close', not 'exit': a dnsmasq that could not be spawned at all (EAGAIN, ENOENT) emits 'error' and 'close' only.
    proc.on('close', (code, signal) => {
      if (closing || child !== proc) return;
      // One that keeps dying at once is started again less and less often, saying so each time.
      pauseMs = Date.now() - startedAt > DNSMASQ_STABLE_MS ? DNSMASQ_RESTART_MS : Math.min(pauseMs * 2, DNSMASQ_RESTART_MAX_MS);
      log(`dnsmasq ${proc.pid === undefined ? 'could not be started' : `exited (${signal ?? `code ${code}`})`}; starting it again in ${pauseMs} ms${pauseMs > DNSMASQ_RESTART_MS ? ' (it keeps failing: DNS for routing: dns apps is down meanwhile)' : ''}`);
      setTimeout(restart, pauseMs).unref();
    });
    return proc;
  };
  let pauseMs = DNSMASQ_RESTART_MS;
  const restart = () => {
    if (closing) return;
    try {
      start();
    } catch (err) {
      // spawn itself threw (ENOMEM): tried again, as a dnsmasq that died.
      pauseMs = Math.min(pauseMs * 2, DNSMASQ_RESTART_MAX_MS);
      log(`dnsmasq: cannot run ${argv[0]}: ${(err as Error).message}; trying again in ${pauseMs} ms`);
      setTimeout(restart, pauseMs).unref();
    }
  };

  const first = start();
  const exited = new Promise<void>((resolve) => first.once('close', () => resolve()));
  const deadline = Date.now() + DNSMASQ_START_TIMEOUT_MS;
  for (;;) {
    const answered = await resolveHost(options.server, probeName, { timeoutMs: 200 }).then(() => true, () => false);
    if (answered) break;
    const dead = await Promise.race([exited.then(() => true), sleep(50).then(() => false)]);
    if (dead || Date.now() > deadline) {
      closing = true;
      first.kill('SIGKILL');
      const why = dead ? 'exited at start' : `did not answer on ${options.server} within ${DNSMASQ_START_TIMEOUT_MS} ms`;
      throw new SlipwayError('dnsmasq_failed', `dnsmasq ${why}${tail.length ? `:\n${tail.join('\n')}` : ''}`);
    }
  }
  log(`dnsmasq answering on ${options.server} for *.${options.domain} from ${options.hostsDir} (pid ${first.pid})`);

  return {
    get pid() {
      return child?.pid;
    },
    close: async () => {
      closing = true;
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    },
  };
}

/** Default places under Slipway's `workdir` when dnsmasq is run by Slipway. */
export function dnsmasqPaths(workdir: string): { hostsDir: string; pidFile: string } {
  return { hostsDir: join(workdir, 'dns', 'hosts'), pidFile: join(workdir, 'dns', 'dnsmasq.pid') };
}

/** One DNS question's limit: dnsmasq on loopback answers in well under a millisecond. */
export const DNS_QUERY_TIMEOUT_MS = 500;

/**
 * Asks `server` (`ip:port`, as `dns.server`) for the A records of `name`,
 * as nginx's resolver would. Resolves with the sorted addresses, `[]` when
 * the name does not exist (NXDOMAIN) or has none. Throws
 * UnavailableError (service `dns`) when the server does not answer or
 * refuses: nothing can be resolved through it.
 */
export async function resolveHost(server: string, name: string, options: { timeoutMs?: number } = {}): Promise<string[]> {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? DNS_QUERY_TIMEOUT_MS, tries: 1 });
  resolver.setServers([server]);
  try {
    return (await resolver.resolve4(name)).sort(compareIps);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
    const why = code === 'EREFUSED' ? 'refused the query (does it serve this domain?)' : `did not answer (${code ?? (err as Error).message})`;
    throw new UnavailableError('dns', `DNS server ${server} ${why} for ${name}`, { cause: err });
  }
}
