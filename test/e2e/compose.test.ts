import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { loadConfig } from '@slipway/config/load-config';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('docker-compose.yml', () => {
  it('is valid for Debian\'s docker-compose', async () => {
    const { stdout } = await runCommand(['docker-compose', '-f', `${root}docker-compose.yml`, 'config'], { cwd: root, env: { ...process.env, HELLO_WEBHOOK_SECRET: 'x'.repeat(32) } });
    for (const service of ['redis', 'etcd', 'nginx', 'receiver', 'worker', 'router']) expect(stdout).toContain(`  ${service}:`);
    expect(stdout).toContain('/var/run/docker.sock:/var/run/docker.sock');
  });

  it('refuses to start without a webhook secret: no shipped file falls back to one', async () => {
    const { HELLO_WEBHOOK_SECRET: _unset, ...env } = process.env;
    const refused = await runCommand(['docker-compose', '-f', `${root}docker-compose.yml`, 'config', '-q'], { cwd: root, env }).catch((err: Error) => err);
    expect(refused).toBeInstanceOf(Error);
    expect((refused as Error).message).toContain('set HELLO_WEBHOOK_SECRET');
    // `${SECRET_VAR:-anything}` anywhere we ship would be a public default secret.
    const shipped = ['docker-compose.yml', 'Dockerfile', ...readdirSync(`${root}examples`).map((f) => `examples/${f}`)];
    for (const file of shipped) {
      expect(readFileSync(`${root}${file}`, 'utf8'), file).not.toMatch(/\$\{[A-Z_]*(SECRET|TOKEN|PASSWORD)[A-Z_]*:-/);
    }
    expect(() => loadConfig({ path: `${root}examples/slipway.compose.yml`, env: {} })).toThrow(/HELLO_WEBHOOK_SECRET is not set/);
  });

  it('ships an example slipway.yml that Slipway accepts', () => {
    const config = loadConfig({ path: `${root}examples/slipway.compose.yml`, env: { HELLO_WEBHOOK_SECRET: 'x'.repeat(20) } });
    expect(config.nginx.reload_cmd[0]).toBe('curl');
    expect(Object.keys(config.apps)).toEqual(['hello']);
  });

  it('the Dockerfile builds every app and package', () => {
    const dockerfile = readFileSync(`${root}Dockerfile`, 'utf8');
    expect(dockerfile).toContain('npm ci');
    expect(dockerfile).toMatch(/ENTRYPOINT \["slipway"\]/);
  });
});
