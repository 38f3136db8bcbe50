import { parseArgs } from 'node:util';
import { startCluster, stopCluster, sweepStaleClusters } from './cluster.js';

export const CLUSTER_USAGE = `  cluster up [--hosts N] [--managers N] [--etcd-members N] [--no-registry] [--no-swarm]
                     simulated hosts (default 3) with a registry and a swarm, printed as JSON on
                     stdout; held until Ctrl-C (or SIGTERM), which tears all of it down
  cluster sweep      tear down clusters whose owner is gone (a killed run)
`;

/** A mistake in the command line: the bin prints the usage and exits 2. */
export class ClusterUsageError extends Error {}

const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function count(value: string | undefined, flag: string, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new ClusterUsageError(`${flag} takes a whole number, not ${value}`);
  return n;
}

/** `slipway-devstack cluster …`; resolves with the exit code. */
export async function clusterCommand(args: string[], log: (line: string) => void): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      hosts: { type: 'string' },
      managers: { type: 'string' },
      'etcd-members': { type: 'string' },
      'no-registry': { type: 'boolean' },
      'no-swarm': { type: 'boolean' },
    },
    strict: true,
  });
  if (sub === 'sweep') {
    const swept = await sweepStaleClusters(log);
    log(swept.length ? `swept clusters ${swept.join(', ')}` : 'nothing to sweep');
    return 0;
  }
  if (sub !== 'up') throw new ClusterUsageError(sub ? `unknown cluster command ${sub}` : 'cluster needs up or sweep');
  const managers = count(values.managers, '--managers', undefined);
  const cluster = await startCluster({
    hosts: count(values.hosts, '--hosts', undefined),
    etcdMembers: count(values['etcd-members'], '--etcd-members', 0),
    registry: !values['no-registry'],
    swarm: values['no-swarm'] ? false : { managers },
    log,
  });
  const stop = new Promise<NodeJS.Signals>((resolve) => {
    for (const signal of STOP_SIGNALS) process.once(signal, () => resolve(signal));
  });
  console.log(JSON.stringify(cluster, null, 2));
  log(`cluster ${cluster.index} is up; Ctrl-C tears it down`);
  // Signal handlers alone do not keep node running; the cluster's processes are not its children.
  const hold = setInterval(() => {}, 2 ** 30);
  const signal = await stop;
  clearInterval(hold);
  log(`${signal}: tearing cluster ${cluster.index} down`);
  await stopCluster(cluster, log);
  return 0;
}
