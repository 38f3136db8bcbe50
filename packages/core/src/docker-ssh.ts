import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { Agent } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex, type Readable, type Writable } from 'node:stream';
import { InvalidInputError } from './slipway-error.js';

/*
 * A Docker engine behind ssh, the way `docker -H ssh://user@host` reaches
 * it: the `ssh` client runs `docker system dial-stdio` on the host, which
 * joins its standard input and output to the engine's socket there, and
 * HTTP goes through that pipe. The ssh client, not a library, so that the
 * operator's keys, agent, ~/.ssh/config and known_hosts apply as they do
 * for their own `ssh`, and a host key it does not know is refused
 * (BatchMode: it never asks). One ssh process per connection, kept alive
 * and reused by the agent like a socket.
 */

/** Where `ssh://[user@]host[:port]` points. */
export interface SshTarget {
  user?: string;
  host: string;
  port?: number;
}

/** What the ssh client is given besides its own configuration. */
export interface SshDialOptions {
  /** The private key to log in with (`-i`; keys of the user's ssh config may be offered too). */
  key?: string;
  /** The host keys trusted, instead of the user's and the system's known_hosts files. */
  knownHosts?: string;
}

/** A user or host name ssh takes as it is: nothing that could read as an option or a second argument. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$/;

/** Parses an `ssh://[user@]host[:port]` URL (no password, no path). Throws InvalidInputError naming what is wrong. */
export function sshTarget(url: string): SshTarget {
  if (!URL.canParse(url)) throw new InvalidInputError(`expected ssh://[user@]host[:port], got ${JSON.stringify(url)}`);
  const parsed = new URL(url);
  if (parsed.protocol !== 'ssh:') throw new InvalidInputError(`expected an ssh:// URL, got ${parsed.protocol}//`);
  if (parsed.password) throw new InvalidInputError('an ssh:// URL must not hold a password: give engine.ssh.key, or use the ssh agent');
  if (parsed.pathname && parsed.pathname !== '/') throw new InvalidInputError(`an ssh:// manager has no path (got ${JSON.stringify(parsed.pathname)}): the engine's socket there is Docker's default`);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  const user = decodeURIComponent(parsed.username);
  if (!NAME.test(host) && !/^[0-9a-fA-F:.]+$/.test(host)) throw new InvalidInputError(`not a host name: ${JSON.stringify(host)}`);
  if (user && !NAME.test(user)) throw new InvalidInputError(`not a user name: ${JSON.stringify(user)}`);
  // The URL parser takes 1-65535 and 0; ssh's -p 0 would fail every call instead of the config's load.
  if (parsed.port === '0') throw new InvalidInputError('not a port: 0');
  return { ...(user ? { user } : {}), host, ...(parsed.port ? { port: Number(parsed.port) } : {}) };
}

/** The argv that opens one pipe to the engine on `target`. Pure. */
export function sshDialArgv(target: SshTarget, options: SshDialOptions = {}): string[] {
  if (options.knownHosts?.includes('"')) throw new InvalidInputError(`engine.ssh.known_hosts: a path with a double quote cannot be given to ssh: ${JSON.stringify(options.knownHosts)}`);
  return [
    // Strict whatever the user's ssh config says (accept-new, no): a manager ssh does not know is refused, never learnt.
    'ssh', '-T', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'LogLevel=ERROR',
    '-o', 'ConnectTimeout=10', '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=3',
    ...(target.port ? ['-p', String(target.port)] : []),
    ...(options.key ? ['-i', options.key, '-o', 'IdentitiesOnly=yes'] : []),
    // Quoted: ssh splits the value at spaces. The system's file too is replaced, so that only these are trusted.
    ...(options.knownHosts ? ['-o', `UserKnownHostsFile="${options.knownHosts}"`, '-o', 'GlobalKnownHostsFile=/dev/null'] : []),
    ...(target.user ? ['-l', target.user] : []),
    '--', target.host, 'docker', 'system', 'dial-stdio',
  ];
}

/** The most of ssh's own words kept for an error (why it could not connect or log in). */
const STDERR_KEPT = 2_000;

/**
 * An http.Agent whose connections are `ssh … docker system dial-stdio`
 * processes: give it to dockerode (`agent`) with any host and port. A
 * connection whose ssh ends before the engine answered fails with ssh's
 * own words (`Host key verification failed.`, `Permission denied`) and
 * code ECONNREFUSED, so it reads as an engine that cannot be reached.
 */
export function sshAgent(target: SshTarget, options: SshDialOptions = {}): Agent {
  // Few at once: each is an ssh login, and sshd drops logins past its MaxStartups (10), counting every process's.
  const agent = new Agent({ keepAlive: true, maxSockets: 4, maxFreeSockets: 2, timeout: 60_000 });
  const [file, ...args] = sshDialArgv(target, options);
  (agent as unknown as { createConnection: () => Socket }).createConnection = () => dial(file!, args) as unknown as Socket;
  return agent;
}

/** One ssh process under a pipe, and what has come of it. */
interface Link {
  child: ChildProcessByStdio<Writable, Readable, Readable>;
  /** The end of ssh's own words: why it could not connect or log in. */
  stderr: string;
  /** The engine has said something through it: its end is the connection's, not a failed login. */
  answered: boolean;
}

function dial(file: string, args: string[]): Duplex {
  /*
   * The agent unrefs a pipe it takes back into its pool and refs it when it
   * hands it out again. A pipe whose ssh ends while pooled is destroyed at
   * once, so the agent passes it over; and if its end has not been seen yet
   * when the next request's first bytes are written (ssh killed a moment
   * before), those bytes have gone nowhere, and a new ssh under the same
   * pipe takes them: the caller never meets the old one's end.
   */
  let pooled = false;
  let reused = false;
  const pipe = new Duplex({
    read() {
      link.child.stdout.resume();
    },
    write(chunk: Buffer, _encoding, done) {
      touch();
      if (!reused) return send(chunk, done);
      reused = false;
      if (over(link)) redial();
      send(chunk, (err) => {
        if (!err) return done();
        redial();
        send(chunk, done);
      });
    },
    final(done) {
      if (link.child.stdin.writable) link.child.stdin.end(done);
      else done();
    },
    destroy(err, done) {
      if (running(link)) link.child.kill('SIGTERM');
      done(err);
    },
  });
  // What http and its agent ask of a socket beyond a stream. ref/unref: an idle pooled pipe (unref'd by
  // the agent) must not keep a command such as `slipway status` from exiting. setTimeout: the agent
  // closes a pipe idle for its `timeout` (a 'timeout' after that long without traffic), as for a socket.
  const handles = (l: Link) => [l.child, l.child.stdin, l.child.stdout, l.child.stderr] as unknown as Array<{ ref: () => void; unref: () => void }>;
  const unrefLink = (l: Link) => handles(l).forEach((h) => h.unref());
  let idle: NodeJS.Timeout | undefined;
  let idleMs = 0;
  const touch = () => {
    clearTimeout(idle);
    if (idleMs > 0 && !pipe.destroyed) idle = setTimeout(() => pipe.emit('timeout'), idleMs).unref();
  };
  const send = (chunk: Buffer, done: (err?: Error | null) => void) => {
    if (link.child.stdin.writable) link.child.stdin.write(chunk, done);
    else done(Object.assign(new Error('the ssh pipe to the engine is closed'), { code: 'EPIPE' }));
  };
  const failed = (why: string) => {
    pipe.destroy(Object.assign(new Error(`ssh to the engine failed: ${why}`), { code: 'ECONNREFUSED' }));
  };
  const open = (): Link => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const opened: Link = { child, stderr: '', answered: false };
    const current = () => opened === link && !pipe.destroyed;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      opened.stderr = (opened.stderr + chunk).slice(-STDERR_KEPT);
    });
    child.stdout.on('data', (chunk: Buffer) => {
      if (!current()) return;
      opened.answered = true;
      touch();
      if (!pipe.push(chunk)) child.stdout.pause();
    });
    // Ended before the engine said anything: ssh could not get there, and says why as it exits (below).
    child.stdout.on('end', () => {
      if (!current() || !opened.answered) return;
      // Idle in the pool: nothing is in flight, and the agent must never hand it out again.
      if (pooled) return pipe.destroy();
      // In use: the connection ends as a socket's does; once read to its end, the pipe is gone.
      pipe.once('end', () => pipe.destroy());
      pipe.push(null);
    });
    child.stdin.on('error', () => {});
    child.on('error', (err) => {
      if (current()) failed(err.message);
    });
    // 'close', not 'exit': by then ssh's stderr has been read to its end.
    child.on('close', (code, signal) => {
      if (!current() || opened.answered) return;
      failed(opened.stderr.trim().split('\n').filter(Boolean).pop() ?? `ssh exited ${code ?? signal}`);
    });
    if (pooled) unrefLink(opened);
    return opened;
  };
  const redial = () => {
    const old = link;
    link = open();
    // Its output, if any is left, is read and dropped (a paused pipe would keep it alive).
    old.child.stdout.resume();
    if (running(old)) old.child.kill('SIGTERM');
  };
  let link = open();
  pipe.on('close', () => clearTimeout(idle));
  Object.assign(pipe, {
    setKeepAlive: () => pipe,
    setNoDelay: () => pipe,
    setTimeout: (ms: number, onTimeout?: () => void) => {
      idleMs = ms;
      // As net.Socket: 0 takes the timeout, and the listener given with it, away.
      if (onTimeout) {
        if (ms === 0) pipe.removeListener('timeout', onTimeout);
        else pipe.once('timeout', onTimeout);
      }
      touch();
      return pipe;
    },
    ref: () => {
      reused = pooled;
      pooled = false;
      handles(link).forEach((h) => h.ref());
      return pipe;
    },
    unref: () => {
      pooled = true;
      unrefLink(link);
      return pipe;
    },
  });
  return pipe;
}

function running(link: Link): boolean {
  return link.child.exitCode === null && link.child.signalCode === null;
}

/** Its ssh has ended, or can no longer be written to. */
function over(link: Link): boolean {
  return !running(link) || !link.child.stdin.writable;
}
