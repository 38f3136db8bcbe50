import { firstLine, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';

/**
 * The rollout's own failures, each with a stable `code`. Besides these a
 * rollout throws UnavailableError (code `unavailable`, from
 * @slipway/core: etcd, Docker, or for routing: dns the DNS server or the
 * registrar unreachable; retry later) and the router's
 * `nginx_check_failed`, `nginx_conf_broken`, `nginx_check_not_run`,
 * `nginx_reload_failed` and `template_invalid`.
 * Each says whose fault it is and whether retrying may help (only
 * `unavailable` and `lock_timeout` may).
 */

/** A new container exited, or never answered 2xx on `health.path` in time. */
export class HealthCheckError extends SlipwayError {
  readonly containerId: string;
  /** Last lines of the container's own log. */
  readonly logTail: string;

  constructor(containerId: string, reason: string, logTail: string) {
    super('health_failed', `container ${containerId.slice(0, 12)} ${reason}${logTail ? `; last lines of its log:\n${logTail}` : ' (its log is empty)'}`, { fault: 'commit' });
    this.name = 'HealthCheckError';
    this.containerId = containerId;
    this.logTail = logTail;
  }
}

/** The signal fired before the switch; the unfinished rollout's containers were removed. */
export class CancelledError extends SlipwayError {
  constructor(step: string) {
    super('cancelled', `rollout cancelled during ${step}; the previous release keeps serving`);
    this.name = 'CancelledError';
  }
}

/** A routing mode this version cannot roll out, or one that lacks its settings (routing: dns without `dns`). */
export class UnsupportedRoutingError extends SlipwayError {
  constructor(app: string, routing: string, why = 'which is not supported') {
    super('unsupported', `app ${app} uses routing: ${routing}, ${why}`);
    this.name = 'UnsupportedRoutingError';
  }
}

/**
 * routing: dns: no registrar holds the app, so nothing would keep its keys
 * alive after the switch. Code `unavailable` (service `registrar`): worth
 * retrying once `slipway router` (which runs the registrar) is up again.
 */
export class RegistrarUnavailableError extends UnavailableError {
  constructor(app: string) {
    super('registrar', `no registrar serves ${app} (routing: dns): nothing would keep its DNS keys alive after the switch; start \`slipway router\` (it runs the registrar), then retry`);
    this.name = 'RegistrarUnavailableError';
  }
}

/**
 * The switch's transaction went to etcd, which neither confirmed nor
 * refused it (a timeout, a dropped connection) and could not be asked
 * again in time: it may have been made. The new containers (or service)
 * are then left running, since etcd may name them and the router would
 * route to them; the next rollout of the app removes whichever set etcd
 * does not name.
 */
export class SwitchOutcomeUnknownError extends UnavailableError {
  constructor(app: string, cause: unknown) {
    super('etcd', `etcd did not confirm the switch of ${app} and could not be asked again, so it may have been made: the new containers are left running, and the next rollout removes whichever set etcd does not name (${firstLine(cause)})`, { cause });
    this.name = 'SwitchOutcomeUnknownError';
  }
}

/** routing: dns: `dns.address_pool` has too few free addresses for the new containers. */
export class AddressPoolExhaustedError extends SlipwayError {
  constructor(pool: string, wanted: number, free: number) {
    super('address_pool_exhausted', `dns.address_pool ${pool} has ${free} free address${free === 1 ? '' : 'es'}, ${wanted} needed (every container of a dns app, of every app and state, holds one until removed)`);
    this.name = 'AddressPoolExhaustedError';
  }
}

/** Another rollout of the app held the lock for longer than we were willing to wait. Worth retrying. */
export class LockTimeoutError extends SlipwayError {
  /** `lock` names it: `the rollout lock of <app>`. */
  constructor(lock: string, waitedMs: number, holder: string) {
    super('lock_timeout', `gave up waiting ${Math.round(waitedMs / 1000)} s for ${lock} (held by ${holder})`, { retryable: true });
    this.name = 'LockTimeoutError';
  }
}

/** No release matches what a rollback asked for. */
export class ReleaseNotFoundError extends SlipwayError {
  constructor(message: string) {
    super('release_not_found', message, { status: 404, fault: 'request' });
    this.name = 'ReleaseNotFoundError';
  }
}

/** The image to run does not exist on the Docker host (a rollback to a pruned image, a typo in --image). */
export class ImageNotFoundError extends SlipwayError {
  constructor(image: string, message = `image ${image} does not exist on the Docker host`) {
    super('image_not_found', message, { status: 404, fault: 'commit' });
    this.name = 'ImageNotFoundError';
  }
}

/** Docker refused to create or start a container (a bad image, a port clash…). */
export class ContainerStartError extends SlipwayError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('container_start_failed', message, { ...options, fault: 'commit' });
    this.name = 'ContainerStartError';
  }
}

/**
 * A failure before the switch after the app's lock was lost (etcd
 * unreachable past its lease): another rollout may have taken the app
 * and removed this one's containers as strays, so the failure is etcd's
 * (retried), not the commit's.
 */
export class LockLostError extends UnavailableError {
  constructor(app: string, cause: unknown) {
    super('etcd', `lost the rollout lock of ${app} before the switch (etcd unreachable for longer than its lease), so another rollout may have taken the app over; nothing was switched (${firstLine(cause)})`, { cause });
    this.name = 'LockLostError';
  }
}

/** What a rollout's failure is: before its switch, once its lock is lost, a LockLostError whatever it looked like (a cancel stays a cancel). */
export function blameLockLoss(app: string, err: unknown, state: { switched: boolean; lockLost: boolean }): unknown {
  return !state.switched && state.lockLost && !(err instanceof UnavailableError) && !(err instanceof CancelledError) ? new LockLostError(app, err) : err;
}
