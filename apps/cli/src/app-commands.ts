import { sharedServerNames } from '@slipway/config/load-config';
import { checkDeployInput, deployApp, rollbackApp } from '@slipway/queue/deploy-requests';
import { checkRollbackTo } from '@slipway/rollout/release-store';
import { publicJob } from '@slipway/queue/job-types';
import { firstLine } from '@slipway/core/slipway-error';
import { withRedis } from '@slipway/queue/redis';
import { appStatuses } from '@slipway/rollout/status';
import { startDnsRouting } from '@slipway/rollout/registrar';
import { managerClient } from '@slipway/rollout/swarm';
import { startPortFollower } from '@slipway/rollout/port-follower';
import { startTaskWatcher } from '@slipway/rollout/task-watcher';
import { routerOnce, watchRouter } from '@slipway/router/watch';
import { type CliContext, parseFlags, UsageError } from './cli-context.js';
import { finishWait } from './job-commands.js';
import { jsonText, short, age, table } from './terminal.js';

export const DEPLOY_USAGE = 'usage: slipway deploy <app> [--ref <branch|sha>] [--image <image>] [--wait]';

export async function deploy(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ref: { type: 'string' }, image: { type: 'string' }, wait: { type: 'boolean' } }, DEPLOY_USAGE, { min: 1, max: 1 });
  const app = ctx.app(positionals[0]!);
  if (values.ref !== undefined && values.image !== undefined) throw new UsageError('--ref and --image exclude each other', DEPLOY_USAGE);
  // A bad --ref or --image is a usage error (2) whether or not Redis answers.
  checkDeployInput({ ref: values.ref, image: values.image });
  const queue = await ctx.queue();
  const record = await deployApp({ config: ctx.config, queue, app, ref: values.ref, image: values.image, trigger: 'cli' });
  if (ctx.options.json && !values.wait) {
    ctx.terminal.out(jsonText(publicJob(record)));
    return 0;
  }
  // With --json (and --wait), stdout holds the one JSON document finishWait prints: what was queued is said on stderr.
  (ctx.options.json ? ctx.terminal.err : ctx.terminal.out)(`job ${record.id} queued: deploy ${app.name} ${record.sha ? short(record.sha) : record.image}${record.ref ? ` (${record.ref})` : ''}`);
  return values.wait ? finishWait(ctx, record.id) : 0;
}

export const ROLLBACK_USAGE = 'usage: slipway rollback <app> [--to <sha>] [--wait]';

/** Back to the previous release (or the one of `--to`), through the same zero-downtime rollout, no rebuild. */
export async function rollback(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { to: { type: 'string' }, wait: { type: 'boolean' } }, ROLLBACK_USAGE, { min: 1, max: 1 });
  const app = ctx.app(positionals[0]!);
  if (values.to !== undefined) checkRollbackTo(values.to);
  const queue = await ctx.queue();
  const { job, target } = await rollbackApp({ queue, etcd: ctx.etcd, app, to: values.to });
  // Chosen against what is live now; a deploy of the app before it in the queue goes live first, and this goes over it.
  const ahead = await withRedis(queue.redis, async () => [
    ...await queue.store.list({ app: app.name, state: 'active', limit: 5 }),
    ...await queue.store.list({ app: app.name, state: 'waiting', limit: 5 }),
  ]).catch(() => []);
  for (const other of ahead.filter((j) => Number(j.id) < Number(job.id))) {
    ctx.terminal.err(`note: job ${other.id} (${other.trigger} of ${short(other.sha ?? other.image)}) is ${other.state === 'active' ? 'running' : 'waiting'} before this rollback: should it go live, the rollback goes over it`);
  }
  if (ctx.options.json && !values.wait) {
    ctx.terminal.out(jsonText(publicJob(job)));
    return 0;
  }
  (ctx.options.json ? ctx.terminal.err : ctx.terminal.out)(`job ${job.id} queued: roll ${app.name} back to ${short(target.sha ?? target.image)} (${target.image}, live ${age(target.at)} by job ${target.job})`);
  return values.wait ? finishWait(ctx, job.id) : 0;
}

export const STATUS_USAGE = 'usage: slipway status [<app>] [--json]';

/** Live release, containers and their health, upstream keys, the nginx file, and any drift between them. */
export async function status(ctx: CliContext, argv: string[]): Promise<number> {
  const { positionals } = parseFlags(argv, {}, STATUS_USAGE, { min: 0, max: 1 });
  const apps = positionals.length ? [ctx.app(positionals[0]!)] : Object.values(ctx.config.apps);
  const manager = ctx.config.engine.type === 'swarm' ? managerClient(ctx.config.engine) : undefined;
  // Asked for all apps at once (one Docker listing, the etcd reads side by side), shown in the config's order.
  const settled = await Promise.allSettled(appStatuses({ apps, nginx: ctx.config.nginx, dns: ctx.config.dns, docker: ctx.docker, etcd: ctx.etcd, manager }));
  // Nothing could be read (etcd or Docker away): one error, as any command says it. One app that could not be read
  // (its services' listing failed on the swarm, say) does not hide the others: it is named, and the exit is 1.
  const failures = settled.flatMap((r, i) => (r.status === 'rejected' ? [{ app: apps[i]!.name, error: r.reason as unknown }] : []));
  if (failures.length > 0 && failures.length === settled.length) throw failures[0]!.error;
  const statuses = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const unreadable = () => {
    for (const { app, error } of failures) ctx.terminal.err(`${app}: status could not be read: ${firstLine(error)}`);
    return failures.length > 0 ? 1 : 0;
  };
  if (ctx.options.json) {
    ctx.terminal.out(jsonText(statuses));
    return unreadable();
  }
  if (settled.length === 0) ctx.terminal.out('no apps configured');
  for (const s of statuses) {
    const release = s.release ? `${short(s.release.sha ?? s.release.image)} (${s.release.image}, job ${s.release.job}, live ${age(s.release.at)})` : 'nothing live';
    ctx.terminal.out(`${s.app}: ${release}`);
    if (s.containers.length && manager) {
      ctx.terminal.out(table(['  TASK', 'SERVICE', 'NODE', 'ENDPOINT', 'HEALTH'], s.containers.map((c) => [`  ${short(c.id)}`, c.service ?? '-', c.node ?? '-', c.address ?? '-', c.healthy ? 'healthy' : 'UNHEALTHY'])));
    } else if (s.containers.length) {
      ctx.terminal.out(table(['  CONTAINER', 'ADDRESS', 'HEALTH'], s.containers.map((c) => [`  ${short(c.id)}`, c.address ?? '-', c.healthy ? 'healthy' : 'UNHEALTHY'])));
    }
    ctx.terminal.out(`  upstreams: ${s.upstreams.length ? s.upstreams.join(', ') : 'none'}`);
    ctx.terminal.out(`  nginx: ${s.nginx.file}${s.nginx.inSync ? ' (in sync)' : ' (OUT OF SYNC)'}`);
    for (const d of s.drift) ctx.terminal.out(`  drift: ${d}`);
  }
  return unreadable();
}

export const ROUTER_USAGE = 'usage: slipway router [--once]';

/**
 * etcd → nginx, confd's role: once (exit 1 if an app could not be
 * applied), or watching until Ctrl-C. Watching also runs what `routing:
 * dns` apps need (dnsmasq, its feed from etcd, the registrar); with no dns
 * app that starts nothing. With engine.type: swarm it also runs the task
 * watcher: the upstream keys follow the tasks Swarm moves; on one engine,
 * the port follower: they follow a restarted container to its new port.
 */
export async function router(ctx: CliContext, argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { once: { type: 'boolean' } }, ROUTER_USAGE, { min: 0, max: 0 });
  const log = (line: string) => ctx.terminal.err(`router: ${line}`);
  for (const problem of sharedServerNames(ctx.config)) log(`warning: ${problem}`);
  const options = { apps: ctx.config.apps, nginx: { ...ctx.config.nginx, batchMs: ctx.config.router.batch_ms }, etcd: ctx.etcd, log };
  if (values.once) {
    const results = await routerOnce(options);
    return results.some((r) => r.outcome === 'failed') ? 1 : 0;
  }
  // DNS first: the dnsmasq a restart stopped answers again (from the hosts files it left) before every upstream app
  // is synced, which may take a while; until then nginx's cached answers are all a routing: dns app has.
  const dns = await startDnsRouting({ config: ctx.config, etcd: ctx.etcd, docker: ctx.docker, log });
  const upstream = await watchRouter(options).catch(async (err: unknown) => {
    await dns.close();
    throw err;
  });
  const follow = ctx.config.engine.type === 'swarm'
    ? startTaskWatcher({ apps: ctx.config.apps, manager: managerClient(ctx.config.engine), etcd: ctx.etcd, log })
    : startPortFollower({ apps: ctx.config.apps, docker: ctx.docker, etcd: ctx.etcd, log });
  const followers = await follow.catch(async (err: unknown) => {
    await dns.close();
    await upstream.close();
    throw err;
  });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await followers.close();
  await dns.close();
  await upstream.close();
  return 0;
}
