import { setTimeout as sleep } from 'node:timers/promises';
import {
  EtcdAuthenticationFailedError, EtcdInvalidAuthTokenError, EtcdLeaseInvalidError, EtcdPermissionDeniedError, GRPCAlreadyExistsError, GRPCFailedPreconditionError,
  GRPCInvalidArgumentError, GRPCNotFoundError, GRPCNotImplementedError, GRPCOutOfRangeError, GRPCResourceExhastedError, GRPCUnauthenticatedError,
  type Etcd3, type PutBuilder,
} from 'etcd3';
import { InvalidInputError, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { isSha, quote, SHA_PREFIX } from '@slipway/core/validate';
import { etcdCall, etcdDeadline } from '@slipway/etcd/client';
import { etcdKeys, readUpstreams, type UpstreamKey } from '@slipway/etcd/keys';
import { acquireAppLock, acquireLock, type AcquireLockOptions, type AppLock } from './app-lock.js';
import { ReleaseNotFoundError, SwitchOutcomeUnknownError } from './rollout-errors.js';
import { rolloutLog as say } from './rollout-log.js';

/*
 * Where the live set and the releases are kept: the store seam, its one
 * implementation over etcd (the keys are @slipway/etcd's), the release
 * record, and which kept release a rollback goes back to.
 */

/** Releases kept for rollback (their images are never deleted by Slipway). */
export const RELEASES_KEPT = 10;

/** What is (or was) live: the value of the release key and of each history entry. */
export interface ReleaseRecord {
  /** Full 40-hex commit, or null for an image deploy. */
  sha: string | null;
  image: string;
  /** The job that rolled it out. */
  job: string;
  /** ISO 8601. */
  at: string;
}

export interface SwitchInput {
  app: string;
  /** Current keys, deleted by the switch (and put back by a revert). */
  remove: readonly UpstreamKey[];
  /** New keys: `<prefix>/<id12>` → `host:port`. */
  add: Readonly<Record<string, string>>;
  release: ReleaseRecord;
  /** The switch only happens while this lock is still ours. */
  lock: AppLock;
  /**
   * routing: dns: the new keys (and, on a revert, the restored ones) are
   * put on this lease, so they drop out by themselves unless a registrar
   * takes them over. Absent for routing: upstream (keys without a lease).
   */
  leaseId?: string;
}

export interface SwitchReceipt {
  input: SwitchInput;
  /** The release record the switch replaced (raw), or null. */
  previousRelease: string | null;
  historyKey: string;
}

/** routing: dns: the lease a switch puts its keys on until the registrar takes them over. */
export interface RouteLease {
  id: string;
  /** Keys under `prefix/` still on this lease (0 once the registrar has taken them all over). */
  keysOnLease(prefix: string): Promise<number>;
  /** Stops renewing it (never revokes: keys the registrar has not taken over yet stay for the TTL). */
  release(): void;
}

/**
 * The store seam: where the live set and the releases are kept. One
 * implementation, over etcd (EtcdReleaseStore). Every method throws
 * UnavailableError when the store cannot be reached.
 */
export interface ReleaseStore {
  lock(app: string, options: AcquireLockOptions): Promise<AppLock>;
  upstreams(prefix: string): Promise<UpstreamKey[]>;
  currentRelease(app: string): Promise<ReleaseRecord | null>;
  /** Newest first. */
  listReleases(app: string): Promise<ReleaseRecord[]>;
  /** Swaps the upstream keys and records the release, in one transaction. */
  switchRelease(input: SwitchInput): Promise<SwitchReceipt>;
  /** Undoes a switch whose proxy apply failed; false when the release changed since (nothing undone). */
  revertSwitch(receipt: SwitchReceipt): Promise<boolean>;
  /** Drops history entries beyond the newest `keep`; returns how many. */
  pruneReleases(app: string, keep: number): Promise<number>;
  /** routing: dns: one address allocation at a time, across apps and workers. */
  addressLock(options: AcquireLockOptions): Promise<AppLock>;
  /** routing: dns: who runs the registrar serving `app` (the value it wrote), or null when none does. */
  registrar(app: string): Promise<string | null>;
  /** routing: dns: grants a lease of `ttlS`, kept alive until released. */
  routeLease(ttlS: number): Promise<RouteLease>;
}

/**
 * Whether a failed etcd call never reached etcd: no connection could be
 * made (refused, or the client's circuit open). A timeout, a reset or a
 * deadline may come after etcd applied it.
 */
function neverSent(err: unknown): boolean {
  if (!(err instanceof UnavailableError)) return false;
  const cause = err.cause as { message?: string; isBrokenCircuitError?: boolean } | undefined;
  return cause?.isBrokenCircuitError === true || /ECONNREFUSED|No connection established/.test(cause?.message ?? '');
}

/** What etcd answers instead of applying a request: the request itself refused (too many operations, no such lease, not allowed...). */
const REFUSALS = [
  GRPCInvalidArgumentError, GRPCNotFoundError, GRPCAlreadyExistsError, GRPCResourceExhastedError, GRPCFailedPreconditionError, GRPCOutOfRangeError,
  GRPCNotImplementedError, GRPCUnauthenticatedError, EtcdPermissionDeniedError, EtcdAuthenticationFailedError, EtcdInvalidAuthTokenError, EtcdLeaseInvalidError,
];

/** Whether etcd refused a call outright, so that it was certainly not applied. */
function refused(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  return REFUSALS.some((refusal) => cause instanceof refusal);
}

/** A switch's transaction as etcd answered it; without `responses` when it was found made by reading the release. */
type SwitchCommit = { succeeded: boolean; responses?: Array<{ response_range?: { kvs?: Array<{ value: Buffer }> } }> };

/** How long a switch etcd neither confirmed nor refused is asked about again (see confirmSwitch). */
export const SWITCH_CONFIRM_MS = 20_000;

const leased = (put: PutBuilder, leaseId: string | undefined) => (leaseId === undefined ? put : put.lease(leaseId));

/** The store seam over etcd. */
export class EtcdReleaseStore implements ReleaseStore {
  constructor(private readonly etcd: Etcd3) {}

  lock(app: string, options: AcquireLockOptions): Promise<AppLock> {
    return acquireAppLock(this.etcd, app, options);
  }

  async upstreams(prefix: string): Promise<UpstreamKey[]> {
    return (await readUpstreams(this.etcd, prefix)).live;
  }

  async currentRelease(app: string): Promise<ReleaseRecord | null> {
    return parseReleaseRecord(await this.rawRelease(app));
  }

  async listReleases(app: string): Promise<ReleaseRecord[]> {
    return (await this.history(app)).map(([, text]) => parseReleaseRecord(text)).filter((r): r is ReleaseRecord => r !== null);
  }

  async switchRelease(input: SwitchInput): Promise<SwitchReceipt> {
    const { etcd } = this;
    const { app, lock } = input;
    const json = JSON.stringify(input.release);
    const historyKey = etcdKeys.releaseEntry(app, new Date(input.release.at));
    const remove = input.remove.filter((u) => !(u.key in input.add));
    const releaseKey = etcdKeys.release(app);
    // The release it replaces is read by the switch itself (ops run in order: this read sees the state before the puts).
    const commit = () => etcdCall(`switching the upstream keys of ${app}`, () => etcd
      .if(lock.key, 'Value', '==', lock.value)
      .then(
        etcd.get(releaseKey),
        ...remove.map((u) => etcd.delete().key(u.key)),
        ...Object.entries(input.add).map(([key, address]) => leased(etcd.put(key).value(address), input.leaseId)),
        etcd.put(releaseKey).value(json),
        etcd.put(historyKey).value(json),
      )
      .options(etcdDeadline())
      .commit());
    let result: SwitchCommit;
    try {
      result = await commit();
    } catch (err) {
      // Anything else may have come after etcd applied it: a timeout, a reset, an INTERNAL or UNKNOWN from a stream a proxy cut.
      if (neverSent(err) || refused(err)) throw err;
      result = await this.confirmSwitch(app, json, historyKey, commit, err);
    }
    if (!result.succeeded) {
      throw new UnavailableError('etcd', `lost the rollout lock of ${app} before the switch (etcd unreachable for longer than the lock's lease?); nothing was switched`);
    }
    const read = result.responses?.[0]?.response_range?.kvs?.[0]?.value?.toString();
    // Made, but only known by asking again, or made twice (a re-send read the first one's release): what it replaced is the history entry before its own.
    const previousRelease = result.responses && read !== json ? (read ?? null) : await this.releaseBefore(app, historyKey);
    return { input, previousRelease, historyKey };
  }

  /** The history entry written before `historyKey`'s, or null. */
  private async releaseBefore(app: string, historyKey: string): Promise<string | null> {
    const history = await this.history(app);
    const at = history.findIndex(([key]) => key === historyKey);
    return (at >= 0 ? history[at + 1] : history.find(([key]) => key < historyKey))?.[1] ?? null;
  }

  /**
   * After a switch etcd neither confirmed nor refused: asks, every second
   * for SWITCH_CONFIRM_MS, whether the release is ours (then it was made),
   * else sends the same transaction again (it is idempotent, and still
   * guarded by the lock). Still no answer: SwitchOutcomeUnknownError, and
   * the caller must not take the new containers away.
   */
  private async confirmSwitch(app: string, json: string, historyKey: string, commit: () => Promise<SwitchCommit>, first: unknown): Promise<SwitchCommit> {
    const deadline = Date.now() + SWITCH_CONFIRM_MS;
    let last = first;
    while (Date.now() < deadline) {
      await sleep(1000);
      try {
        if ((await this.rawRelease(app)) === json) return { succeeded: true };
        // Made, and replaced since by another rollout that took the lock meanwhile (cut off past the lease): its
        // history entry says so. Neither "nothing was switched" (the new containers are that rollout's previous
        // release, which it drains) nor live: left to that rollout, as an unknown outcome is.
        const entry = await etcdCall(`reading ${historyKey}`, () => this.etcd.get(historyKey).options(etcdDeadline()).string());
        if (entry === json) throw new SwitchOutcomeUnknownError(app, new Error('the switch was made, and another rollout has switched since'));
        return await commit();
      } catch (err) {
        if (refused(err) || err instanceof SwitchOutcomeUnknownError) throw err;
        last = err;
      }
    }
    throw new SwitchOutcomeUnknownError(app, last);
  }

  /**
   * Puts back what `switchRelease` replaced, if the release is still the one
   * it recorded. Throws UnavailableError when etcd does not answer; false
   * when the release has changed since (nothing is put back).
   */
  async revertSwitch(receipt: SwitchReceipt): Promise<boolean> {
    const { etcd } = this;
    const { input } = receipt;
    const releaseKey = etcdKeys.release(input.app);
    // And only while this rollout holds the lock. Not once it lapsed, even with no holder now: another rollout may
    // have taken it since, and removed the previous release's containers as strays, which the keys put back would
    // name. Refused, the new containers stay as etcd names them, and the next rollout plans from etcd.
    const result = await etcdCall(`reverting the switch of ${input.app}`, () => etcd
      .if(releaseKey, 'Value', '==', JSON.stringify(input.release))
      .and(input.lock.key, 'Value', '==', input.lock.value)
      .then(
        ...Object.keys(input.add).filter((key) => !input.remove.some((u) => u.key === key)).map((key) => etcd.delete().key(key)),
        ...input.remove.map((u) => leased(etcd.put(u.key).value(u.address), input.leaseId)),
        receipt.previousRelease === null ? etcd.delete().key(releaseKey) : etcd.put(releaseKey).value(receipt.previousRelease),
        etcd.delete().key(receipt.historyKey),
      )
      .else(etcd.get(releaseKey), etcd.get(receipt.historyKey))
      .options(etcdDeadline())
      .commit());
    if (result.succeeded) return true;
    // Put back already, by this very call: the etcd3 client sent it again after etcd made it and its answer was lost.
    const [release, history] = result.responses.map((r) => r.response_range?.kvs[0]?.value.toString() ?? null);
    return history === null && release === receipt.previousRelease;
  }

  async pruneReleases(app: string, keep: number): Promise<number> {
    const old = (await this.history(app)).slice(keep).map(([key]) => key);
    if (old.length === 0) return 0;
    await etcdCall(`pruning the releases of ${app}`, () => Promise.all(old.map((key) => this.etcd.delete().key(key).exec())));
    return old.length;
  }

  addressLock(options: AcquireLockOptions): Promise<AppLock> {
    return acquireLock(this.etcd, etcdKeys.addressLock, 'the address pool lock', options);
  }

  registrar(app: string): Promise<string | null> {
    return etcdCall(`reading the registrar of ${app}`, () => this.etcd.get(etcdKeys.registrar(app)).options(etcdDeadline()).string());
  }

  async routeLease(ttlS: number): Promise<RouteLease> {
    const lease = this.etcd.lease(ttlS);
    lease.on('lost', () => {});
    const id = await etcdCall('granting the route lease', () => lease.grant()).catch(async (err: unknown) => {
      lease.release();
      throw err;
    });
    return {
      id,
      keysOnLease: async (prefix) => {
        const res = await etcdCall(`reading ${prefix}/`, () => this.etcd.getAll().prefix(`${prefix}/`).options(etcdDeadline()).exec());
        return res.kvs.filter((kv) => String(kv.lease) === id).length;
      },
      release: () => lease.release(),
    };
  }

  private rawRelease(app: string): Promise<string | null> {
    return etcdCall(`reading the release of ${app}`, () => this.etcd.get(etcdKeys.release(app)).options(etcdDeadline()).string());
  }

  /**
   * History entries as [key, raw record], newest first: in the order etcd
   * wrote them (their revision), not by the time in their key, which is
   * the clock of whichever worker switched (one behind would have its own
   * live release pruned at once, one ahead stay "newest" for good).
   */
  private async history(app: string): Promise<Array<[string, string]>> {
    const res = await etcdCall(`reading the releases of ${app}`, () =>
      this.etcd.getAll().prefix(etcdKeys.releases(app)).options(etcdDeadline()).exec());
    return res.kvs
      .map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), revision: BigInt(kv.mod_revision) }))
      .sort((a, b) => (a.revision === b.revision ? (a.key < b.key ? 1 : -1) : a.revision < b.revision ? 1 : -1))
      .map(({ key, value }) => [key, value]);
  }
}

/** What is live for `app`, or null before the first release. Throws UnavailableError. */
export function currentRelease(etcd: Etcd3, app: string): Promise<ReleaseRecord | null> {
  return new EtcdReleaseStore(etcd).currentRelease(app);
}

/** The kept release history of `app`, newest (the live one) first; at most RELEASES_KEPT. Throws UnavailableError. */
export function listReleases(etcd: Etcd3, app: string): Promise<ReleaseRecord[]> {
  return new EtcdReleaseStore(etcd).listReleases(app);
}

/** Parses a stored record; null for anything that is not one (never trusted blindly: etcd is writable by hand). */
export function parseReleaseRecord(text: string | null): ReleaseRecord | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    if (typeof v.image !== 'string' || typeof v.job !== 'string' || typeof v.at !== 'string') return null;
    if (v.sha !== null && !isSha(v.sha)) return null;
    return { sha: v.sha as string | null, image: v.image, job: v.job, at: v.at };
  } catch {
    return null;
  }
}

/** A release's image as a rollback tells them apart: a swarm release's pin (`@sha256:…`) aside, as a rebuild of one commit is the same release. */
const imageOf = (release: ReleaseRecord) => release.image.replace(/@sha256:[0-9a-f]{64}$/, '');

/** A rollback's `--to`: a commit's 7-40 lowercase hex digits (checked before anything is read). */
export function checkRollbackTo(to: string): void {
  if (!SHA_PREFIX.test(to)) throw new InvalidInputError(`--to must be 7 to 40 lowercase hex digits, got ${quote(to)}`);
}

/**
 * The release a rollback goes back to: the one whose commit starts with
 * `to` (7 to 40 hex digits), by default the newest whose image differs from
 * the live one; never what is live already. Pure; `history` is newest
 * first. Throws InvalidInputError for a malformed `to`,
 * ReleaseNotFoundError when no kept release other than the live one matches.
 */
export function rollbackTarget(history: readonly ReleaseRecord[], current: ReleaseRecord | null, to?: string): ReleaseRecord {
  const notLive = (r: ReleaseRecord) => current === null || imageOf(r) !== imageOf(current);
  if (to !== undefined) {
    checkRollbackTo(to);
    const matches = history.filter((r) => r.sha !== null && r.sha.startsWith(to));
    // As git does: a prefix two kept commits share names neither.
    const commits = [...new Set(matches.map((r) => r.sha!))];
    if (commits.length > 1) throw new SlipwayError('ambiguous_ref', `--to ${to} is ambiguous: kept releases of commits ${commits.map((sha) => sha.slice(0, 12)).join(', ')}; give more of the commit`, { status: 400, fault: 'request' });
    const match = matches.find(notLive);
    if (!match && matches.length > 0) throw new ReleaseNotFoundError(`commit ${to} is what is live (job ${current!.job}): nothing to roll back to (slipway deploy --ref ${to} deploys it again)`);
    if (!match) throw new ReleaseNotFoundError(`no kept release has commit ${to} (kept: ${history.map((r) => r.sha?.slice(0, 12) ?? r.image).join(', ') || 'none'})`);
    return match;
  }
  const target = history.find(notLive);
  if (!target) throw new ReleaseNotFoundError(current ? `no release before ${current.job} (${current.image}) is kept` : 'no release to roll back to');
  return target;
}

/**
 * After an apply that failed past the switch: puts etcd back as it was.
 * True once etcd names the previous set again, so the new containers (or
 * service) may go; false, said in the log, when it could not (etcd away,
 * or the release changed): they stay, since etcd names them.
 */
export async function revertAfterFailedApply(store: Pick<ReleaseStore, 'revertSwitch'>, receipt: SwitchReceipt, log: (line: string) => void): Promise<boolean> {
  try {
    if (await store.revertSwitch(receipt)) return true;
    log(say.revertRaced());
  } catch (err) {
    log(say.revertFailed(err));
  }
  return false;
}
