/**
 * npm run bench:reload-tiers — what an nginx reload costs an app's
 * keep-alive clients, and whether a front nginx that is never reloaded
 * takes that cost away (issue 19, part 1: "keep-alive resets").
 *
 * nginx 1.22 (Debian bookworm's) closes every idle keep-alive connection
 * of its old workers when it reloads; a client whose next request was
 * already on its way gets a reset. Batching switches shares reloads, but
 * only among switches that land together. This bench measures the other
 * way out: clients talk to a front nginx whose file never changes, which
 * proxies over its own keep-alive connections to the nginx that reloads;
 * nginx retries a request that fails on one of its cached upstream
 * connections (an idempotent one: a POST it has sent is not retried).
 *
 * Both tiers are what the router writes with `nginx.front`: the back
 * nginx holds two apps whose upstream is the same plain Node server, one
 * rendered for one tier (clients straight to it) and one behind the front
 * on its unix socket (`renderNginxConf` with `back`), and the front holds
 * the second app's `renderFrontConf`. Each phase: BENCH_CLIENTS (default 50) keep-alive
 * clients (devstack's startLoad, one request at a time each), BENCH_GAP_MS
 * (default 20) between an answer and the next request, for BENCH_SECONDS
 * (default 15), the back
 * reloaded every second; GET and POST, straight to the back and through
 * the front, BENCH_ROUNDS (default 2) rounds. Then the hop's cost: wrk
 * with as many connections and no reload, requests per second and p99
 * through the front as ratios against straight to the back.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { validateConfig } from '@slipway/config/load-config';
import { freePort, isolatedNginx, startLoad, tempDir, waitFor, type NginxService } from '@slipway/devstack/testing';
import { backListen, renderFrontConf, renderNginxConf } from '@slipway/router/nginx';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 50);
const GAP_MS = Number(process.env.BENCH_GAP_MS ?? 20);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

type Method = 'GET' | 'POST';

/** What one phase's clients got: answered, and failed by status or socket error code. */
interface PhaseResult {
  ok: number;
  failed: Record<string, number>;
  reloads: number;
}

/** An app as the config loader builds it, listening on `listen`. */
function benchApp(name: string, listen: string) {
  const { apps } = validateConfig({ apps: { [name]: { repo: 'https://example.com/acme/app.git', listen, port: 8080 } } }, { file: null, env: {} });
  return apps[name]!;
}

/** Runs an nginx's reload command (which also loads a changed conf dir); throws if nginx refuses. */
function reload(nginx: NginxService): void {
  const run = spawnSync(nginx.reloadCmd[0]!, nginx.reloadCmd.slice(1), { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`nginx reload failed: ${run.stderr}`);
}

/** CLIENTS keep-alive clients on `port` for SECONDS, `back` reloaded once a second. */
async function phase(port: number, method: Method, back: NginxService): Promise<PhaseResult> {
  const load = startLoad({ url: `http://127.0.0.1:${port}`, clients: CLIENTS, keepAlive: true, method, gapMs: GAP_MS });
  for (let s = 0; s < SECONDS; s++) {
    await new Promise((r) => setTimeout(r, 1000));
    reload(back);
  }
  const report = await load.stop();
  const failed: Record<string, number> = {};
  for (const kind of [...report.failures.map((f) => String(f.status)), ...report.socketErrors.map((e) => e.code)]) failed[kind] = (failed[kind] ?? 0) + 1;
  return { ok: report.ok, failed, reloads: SECONDS };
}

const failedCount = (r: PhaseResult) => Object.values(r.failed).reduce((a, b) => a + b, 0);

/** wrk's requests per second and p99 (ms) on `port`: CLIENTS connections for 5 s. */
async function wrk(port: number): Promise<{ rps: number; p99: number }> {
  const run = await new Promise<string>((resolve, reject) => {
    execFile('wrk', ['-t1', `-c${CLIENTS}`, '-d5s', '--latency', `http://127.0.0.1:${port}/`], (error, stdout) => (error ? reject(error) : resolve(stdout)));
  });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(run)?.[1]);
  const [, value, unit] = /\s99%\s+([\d.]+)(us|ms|s)/.exec(run) ?? [];
  const p99 = Number(value) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);
  if (!Number.isFinite(rps) || !Number.isFinite(p99)) throw new Error(`wrk printed no figures:\n${run}`);
  return { rps, p99 };
}

/** Peak RSS (VmHWM) of an nginx master and of its current workers, in MB. */
function nginxPeakMb(master: number): string {
  const hwm = (pid: number) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  const workers = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    try {
      return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === master;
    } catch {
      return false;
    }
  });
  return `master ${hwm(master).toFixed(0)} MB, workers ${workers.map((w) => hwm(w).toFixed(0)).join('/')} MB`;
}

describe('bench: nginx reloads and keep-alive clients, with and without a front nginx', () => {
  it(`${CLIENTS} clients, a reload a second, ${ROUNDS} rounds of ${SECONDS} s per phase`, async () => {
    const dir = tempDir('slipway-bench-tiers-');
    let app: Server | undefined;
    const nginxes: Array<{ stop(): Promise<void> }> = [];
    try {
      app = createServer((req, res) => {
        req.resume();
        req.on('end', () => res.end('ok\n'));
      });
      app.keepAliveTimeout = 60_000;
      const appPort = await freePort();
      await new Promise<void>((resolve) => app!.listen(appPort, '127.0.0.1', resolve));

      const back = await isolatedNginx(join(dir.path, 'back'));
      nginxes.push(back);
      const front = await isolatedNginx(join(dir.path, 'front'));
      nginxes.push(front);
      const [backPort, frontPort] = [await freePort(), await freePort()];
      // The front's workers run as another user: they must reach the back's socket.
      chmodSync(dir.path, 0o755);
      const sockets = join(dir.path, 'sockets');
      mkdirSync(sockets, { mode: 0o755 });
      const straightApp = benchApp('straight', `127.0.0.1:${backPort}`);
      const tiered = benchApp('tiered', `127.0.0.1:${frontPort}`);
      const settings = (n: NginxService) => ({ conf_dir: n.confDir, check_cmd: n.checkCmd, reload_cmd: n.reloadCmd });
      const socket = backListen({ ...settings(back), front: { ...settings(front), socket_dir: sockets } }, tiered.name)!;
      writeFileSync(join(back.confDir, 'slipway-straight.conf'), renderNginxConf({ app: straightApp, upstreams: [`127.0.0.1:${appPort}`] }));
      writeFileSync(join(back.confDir, 'slipway-tiered.conf'), renderNginxConf({ app: tiered, upstreams: [`127.0.0.1:${appPort}`], back: socket }));
      writeFileSync(join(front.confDir, 'slipway-tiered.conf'), renderFrontConf(tiered, socket));
      reload(back);
      reload(front);
      await waitFor('both tiers', async () => (await fetch(`http://127.0.0.1:${frontPort}/`).catch(() => null))?.ok, { timeoutMs: 15_000 });

      // Old workers of the last reload close their idle connections a moment later: let them go before the next phase.
      const settle = () => new Promise((r) => setTimeout(r, 2000));
      const paths = { 'straight to the reloading nginx': backPort, 'through a front nginx': frontPort } as const;
      type Path = keyof typeof paths;
      const totals = new Map<string, PhaseResult>();
      for (let round = 1; round <= ROUNDS; round++) {
        for (const method of ['GET', 'POST'] as const) {
          for (const path of Object.keys(paths) as Path[]) {
            const r = await phase(paths[path], method, back);
            await settle();
            const key = `${method} ${path}`;
            const total = totals.get(key) ?? { ok: 0, failed: {}, reloads: 0 };
            total.ok += r.ok;
            total.reloads += r.reloads;
            for (const [kind, n] of Object.entries(r.failed)) total.failed[kind] = (total.failed[kind] ?? 0) + n;
            totals.set(key, total);
            console.log(`[tiers] round ${round}, ${key}: ${r.ok} answered, ${failedCount(r)} failed ${JSON.stringify(r.failed)} over ${r.reloads} reloads`);
          }
        }
      }

      // The hop's cost, measured by wrk (the bench's own clients would share a core with the app server).
      const cost = new Map<Path, Array<{ rps: number; p99: number }>>();
      for (let run = 0; run < 3; run++) {
        for (const path of Object.keys(paths) as Path[]) {
          const runs = cost.get(path) ?? [];
          runs.push(await wrk(paths[path]));
          cost.set(path, runs);
        }
      }
      const median = (path: Path, figure: 'rps' | 'p99') => cost.get(path)!.map((r) => r[figure]).sort((a, b) => a - b)[1]!;
      const straight = { rps: median('straight to the reloading nginx', 'rps'), p99: median('straight to the reloading nginx', 'p99') };
      const fronted = { rps: median('through a front nginx', 'rps'), p99: median('through a front nginx', 'p99') };

      const row = (key: string) => {
        const t = totals.get(key)!;
        const failed = failedCount(t);
        return `| ${key} | ${t.reloads} | ${t.ok + failed} | ${failed} ${JSON.stringify(t.failed)} | ${(failed / t.reloads).toFixed(2)} |`;
      };
      const ratio = (method: Method) => {
        const a = failedCount(totals.get(`${method} straight to the reloading nginx`)!);
        const b = failedCount(totals.get(`${method} through a front nginx`)!);
        return `${method}: ${b} against ${a} (${a === 0 ? 'n/a' : (b / a).toFixed(2)}×)`;
      };
      console.log([
        `${CLIENTS} keep-alive clients, ${GAP_MS} ms between requests, the back nginx reloaded every second; ${ROUNDS} rounds of ${SECONDS} s per phase`,
        '| clients | reloads | requests | failed | failed per reload |',
        '|---|---:|---:|---:|---:|',
        ...[...totals.keys()].map(row),
        `failed through the front / failed straight: ${ratio('GET')}; ${ratio('POST')}`,
        `the hop's cost, wrk -c${CLIENTS} for 5 s with no reload, median of 3 alternating runs: straight ${straight.rps.toFixed(0)} req/s, p99 ${straight.p99.toFixed(1)} ms; `
          + `through the front ${fronted.rps.toFixed(0)} req/s, p99 ${fronted.p99.toFixed(1)} ms: ${(fronted.rps / straight.rps).toFixed(2)}× the requests, ${(fronted.p99 / straight.p99).toFixed(2)}× the p99`,
        `peak RSS: bench process ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB; back nginx ${nginxPeakMb(back.pid)}; front nginx ${nginxPeakMb(front.pid)}`,
      ].join('\n'));
    } finally {
      for (const nginx of nginxes) await nginx.stop();
      app?.closeAllConnections();
      await new Promise((resolve) => (app ? app.close(resolve) : resolve(undefined)));
      dir.remove();
    }
  }, 30 * 60_000);
});
