import type { AppConfig } from '@slipway/config/types';
import { testAppName } from '@slipway/devstack/testing';

/** A complete AppConfig for a test, named so the stack's teardown recognises its leftovers. */
export function testApp(overrides: Partial<AppConfig> & { repo: string }): AppConfig {
  const name = overrides.name ?? testAppName();
  return {
    name,
    branch: 'master',
    replicas: 1,
    port: 8080,
    host_ip: '127.0.0.1',
    health: { path: '/healthz', timeout_s: 10, interval_ms: 200 },
    listen: '80',
    server_name: [],
    drain_s: 0,
    stop_timeout_s: 5,
    dockerfile: 'Dockerfile',
    build_args: {},
    env: {},
    etcd_prefix: `/slipway/apps/${name}/upstream`,
    routing: 'upstream',
    ...overrides,
  };
}
