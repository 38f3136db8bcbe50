import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../wait-for.js';
import { spawnService } from '../processes.js';
import { httpOk } from './probes.js';

export interface NginxService {
  pid: number;
  /** Directory nginx runs under: its main config, pid file, logs and temp files. */
  prefix: string;
  /** The main config: includes `confDir/*.conf`. */
  mainConf: string;
  /** What Slipway's `nginx.conf_dir` should be. */
  confDir: string;
  /** A loopback port answering `GET /__devstack` with 200, to probe nginx itself. */
  statusPort: number;
  /** For slipway.yml's `nginx.check_cmd` / `nginx.reload_cmd`. */
  checkCmd: string[];
  reloadCmd: string[];
}

/** The main nginx.conf of a stack: everything under `prefix`, Slipway's files included. */
export function renderMainConf(prefix: string, confDir: string, statusPort: number): string {
  const tmp = (name: string) => `${name}_temp_path ${join(prefix, 'tmp', name)};`;
  return `# Written by @slipway/devstack. Slipway's per-app files live in ${confDir}.
worker_processes 2;
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  ${tmp('client_body')}
  ${tmp('proxy')}
  ${tmp('fastcgi')}
  ${tmp('uwsgi')}
  ${tmp('scgi')}
  server {
    listen 127.0.0.1:${statusPort};
    location = /__devstack { return 200 "ok\\n"; }
  }
  include ${join(confDir, '*.conf')};
}
`;
}

/**
 * An nginx of its own: a prefix directory, a main config including
 * `confDir`, a master process in the foreground of its own process group.
 */
export async function startNginx(prefix: string, statusPort: number, confDir = join(prefix, 'conf.d')): Promise<NginxService> {
  for (const dir of [prefix, confDir, ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((d) => join(prefix, 'tmp', d))]) {
    mkdirSync(dir, { recursive: true, mode: 0o777 });
  }
  const mainConf = join(prefix, 'nginx.conf');
  writeFileSync(mainConf, renderMainConf(prefix, confDir, statusPort));
  const base = ['nginx', '-p', `${prefix}/`, '-c', mainConf];
  const pid = spawnService([...base, '-e', join(prefix, 'error.log'), '-g', 'daemon off;'], join(prefix, 'nginx.out'));
  await waitFor(`nginx on port ${statusPort}`, () => httpOk(`http://127.0.0.1:${statusPort}/__devstack`), { timeoutMs: 15_000 });
  return {
    pid, prefix, mainConf, confDir, statusPort,
    checkCmd: [...base, '-t', '-q'],
    reloadCmd: [...base, '-s', 'reload'],
  };
}
