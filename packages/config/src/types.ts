/** The validated, defaulted configuration. Keys keep the file's spelling. */
export interface SlipwayConfig {
  /** Absolute path of the file this came from, or null when built in code. */
  file: string | null;
  redis: string;
  etcd: string[];
  docker: string;
  /** Absolute. */
  workdir: string;
  queue: { prefix: string };
  receiver: { host: string; port: number; body_limit_mb: number; delivery_retention_h: number; metrics: string; processes: number };
  worker: { concurrency: number; attempts: number; backoff_ms: number; metrics: string };
  dashboard: { host: string; port: number; token?: string; public_url?: string; allowed_hosts: string[] };
  jobs: { log_max_lines: number; log_max_bytes: number; keep_per_app: number; keep_days: number };
  forges: Record<'github' | 'gitea' | 'gitlab', { token?: string; api_url?: string }>;
  nginx: NginxConfig;
  router: { batch_ms: number };
  apps: Record<string, AppConfig>;
  dns: { server: string; domain: string; address_pool: string };
  engine: EngineConfig;
}

/** The nginx Slipway writes each app's routing for, and optionally a front nginx before it (see `front`). */
export interface NginxConfig {
  conf_dir: string;
  check_cmd: string[];
  reload_cmd: string[];
  /**
   * Two tiers: clients connect to this nginx, which forwards each app to
   * the back one (the nginx above) on a unix socket in `socket_dir`. Its
   * files change only with an app's listen or server_name, so deploys,
   * which reload the back, never close a client's connection.
   */
  front?: { conf_dir: string; check_cmd: string[]; reload_cmd: string[]; socket_dir: string };
}

/** Where containers run: the one engine of `docker`, or a Swarm cluster through one of its managers. */
export interface EngineConfig {
  type: 'docker' | 'swarm';
  /** swarm: the manager's endpoint; defaults to `docker`. */
  manager?: string;
  /** Absolute paths. */
  tls?: { ca: string; cert: string; key: string };
  /** ssh:// manager: absolute paths of the key to log in with and of the only host keys trusted. */
  ssh?: { key?: string; known_hosts?: string };
  /** swarm: `host:port`; required. */
  registry?: string;
  registry_auth?: { username: string; password: string };
}

export interface AppConfig {
  /** The key under `apps`. */
  name: string;
  repo: string;
  branch: string;
  secret?: string;
  replicas: number;
  port: number;
  host_ip: string;
  health: { path: string; timeout_s: number; interval_ms: number };
  listen: string;
  server_name: string[];
  drain_s: number;
  stop_timeout_s: number;
  build_timeout_s: number;
  build_context_max_mb: number;
  /** Absent: the pushed commit's `.slipway.yml` decides. */
  steps?: StepConfig[];
  dockerfile: string;
  build_args: Record<string, string>;
  env: Record<string, string>;
  etcd_prefix: string;
  routing: 'upstream' | 'dns';
  /** Absolute path of the app's own nginx template, if any. */
  template?: string;
  credentials?: { username?: string; password?: string; ssh_key?: string };
  /** engine.type: swarm: placement constraints of the app's service. */
  placement: string[];
  /** engine.type: swarm: limits (and reservations) per replica. */
  resources?: { cpus?: number; memory_mb?: number };
  notify: NotifyTarget[];
}

/** A test step run between the build and the rollout (`apps.<app>.steps`, or a repository's `.slipway.yml`). */
export interface StepConfig {
  name: string;
  /** argv, never a shell string. */
  command: string[];
  /** Default: the image just built. */
  image?: string;
  env: Record<string, string>;
  timeout_s: number;
}

export interface NotifyTarget {
  type: 'slack' | 'webhook';
  url: string;
  secret?: string;
  on: Array<'failure' | 'recovery' | 'success'>;
}
