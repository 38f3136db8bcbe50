/**
 * npm run bench:nginx-check — what many apps cost nginx to load (issue 19,
 * part 1). Every switch runs `nginx -t` on a harness that includes every
 * app's file, and every reload parses them all again, so one app's file is
 * paid by every deploy on the host.
 *
 * For N apps, the median wall time of `nginx -t` on the router's own harness
 * (renderHarness) over the files the router renders today (upstream and dns
 * apps), beside the baseline of the same upstream files each with the
 * `map $http_upgrade` of its own that the router rendered before: the ratio
 * is now / baseline. Also whether nginx warned, and each count's ratio
 * against 1 app. BENCH_CHECKS (default 7) runs per figure.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { validateConfig } from '@slipway/config/load-config';
import { tempDir } from '@slipway/devstack/testing';
import { renderDnsNginxConf } from '@slipway/router/dns';
import { renderHarness, renderNginxConf } from '@slipway/router/nginx';

const COUNTS = [1, 10, 50, 100, 300];
const CHECKS = Number(process.env.BENCH_CHECKS ?? 7);

type Shape = 'upstream' | 'dns' | 'map (before)';

/** How today's render sets the shared Connection variable, per request in the app's server. */
const SHARED_CONNECTION = / {4}set \$slipway_connection "";\n {4}if \(\$http_upgrade\) \{\n {8}set \$slipway_connection upgrade;\n {4}\}\n/;

/** The earlier render: the same file plus one `map` per app carrying its Connection header. */
function withOwnMap(text: string, app: string): string {
  // Should the render's block change, this baseline would keep a `set` beside its map and measure neither shape.
  if (!SHARED_CONNECTION.test(text)) throw new Error(`the rendered file no longer sets $slipway_connection as this baseline expects; update SHARED_CONNECTION:\n${text}`);
  const variable = `$slipway_${app.replaceAll('-', '_')}_connection`;
  return `${text.replace(SHARED_CONNECTION, '').replaceAll('$slipway_connection', variable)}
map $http_upgrade ${variable} {
    default "";
    ~.      upgrade;
}
`;
}

/** Writes N apps of one shape and the harness including them; the harness path. */
function writeApps(dir: string, shape: Shape, count: number): string {
  const confDir = join(dir, `${shape.replace(/\W+/g, '-')}-${count}`);
  mkdirSync(join(confDir, 'tmp'), { recursive: true });
  const names = Array.from({ length: count }, (_, i) => `bench-app-${String(i).padStart(5, '0')}`);
  const raw = Object.fromEntries(names.map((name, i) => [name, { repo: 'https://example.com/acme/app.git', listen: `127.0.0.1:${20000 + i}`, routing: shape === 'dns' ? 'dns' : 'upstream', port: 8080 }]));
  const { apps } = validateConfig({ apps: raw }, { file: null, env: {} });
  const files = names.map((name) => {
    const app = apps[name]!;
    const text = shape === 'dns'
      ? renderDnsNginxConf({ app, dns: { server: '127.0.0.1:5353', domain: 'slipway.internal', address_pool: '127.0.11.0/24' } })
      : renderNginxConf({ app, upstreams: ['127.0.0.1:30000'] });
    const file = join(confDir, `slipway-${name}.conf`);
    writeFileSync(file, shape === 'map (before)' ? withOwnMap(text, name) : text);
    return file;
  });
  const harness = join(confDir, 'harness.conf');
  writeFileSync(harness, renderHarness(join(confDir, 'tmp'), files));
  return harness;
}

/** Median ms of `nginx -t` on the harness, and whether nginx said anything besides ok. */
function check(harness: string): { ms: number; warned: boolean } {
  const times: number[] = [];
  let warned = false;
  for (let i = 0; i < CHECKS; i++) {
    const started = performance.now();
    const run = spawnSync('nginx', ['-t', '-q', '-c', harness], { encoding: 'utf8' });
    times.push(performance.now() - started);
    if (run.status !== 0) throw new Error(`nginx -t failed: ${run.stderr}`);
    warned ||= run.stderr.includes('[warn]');
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)]!, warned };
}

describe('bench: nginx -t as apps grow', () => {
  it('prints each shape per app count, as ratios against the per-app map and against 1 app', () => {
    const dir = tempDir('slipway-bench-nginx-');
    try {
      const shapes: Shape[] = ['map (before)', 'upstream', 'dns'];
      const rows = COUNTS.map((count) => ({ count, ...Object.fromEntries(shapes.map((shape) => [shape, check(writeApps(dir.path, shape, count))])) }) as { count: number } & Record<Shape, { ms: number; warned: boolean }>);
      const one = rows[0]!;
      const cell = (r: { ms: number; warned: boolean }, base: { ms: number }) => `${r.ms.toFixed(0)} ms (${(r.ms / base.ms).toFixed(1)}× 1 app)${r.warned ? ', warned' : ''}`;
      console.log([
        `nginx -t on the router's harness, median of ${CHECKS} runs`,
        '| apps | per-app map (before) | upstream (now) | dns (now) | upstream now / before |',
        '|---:|---:|---:|---:|---:|',
        ...rows.map((r) => `| ${r.count} | ${cell(r['map (before)'], one['map (before)'])} | ${cell(r.upstream, one.upstream)} | ${cell(r.dns, one.dns)} | ${(r.upstream.ms / r['map (before)'].ms).toFixed(2)} |`),
        `peak RSS: bench process ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB (nginx -t runs are short-lived children)`,
      ].join('\n'));
    } finally {
      dir.remove();
    }
  }, 600_000);
});
