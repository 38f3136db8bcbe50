import type { CommandError } from '@slipway/core/run-command';
import { SlipwayError } from '@slipway/core/slipway-error';

/**
 * The router's failures, each with a stable `code`. None is worth retrying
 * as is: they need a new deploy, a fixed template or a working nginx.
 */

/** No live address for an app: rendering would take it offline, so the previous file is kept. */
export class EmptyUpstreamError extends SlipwayError {
  readonly app: string;

  constructor(app: string, prefix: string) {
    super('empty_upstream', `refusing to render an empty upstream for ${app}: no live address under ${prefix}/ (keeping the previous nginx file)`);
    this.name = 'EmptyUpstreamError';
    this.app = app;
  }
}

/**
 * `check_cmd` rejected the candidate file: on its own (the live file was
 * not touched), or, renamed in, beside the other files of its reload batch
 * (its previous file put back; see reloadNginx).
 */
export class NginxCheckError extends SlipwayError {
  /** The last lines nginx printed. */
  readonly output: string;

  constructor(app: string, output: string, options: { cause?: unknown } = {}) {
    super('nginx_check_failed', `nginx rejected the candidate config for ${app}${output ? `:\n${output}` : ''}`, { ...options, fault: 'commit' });
    this.name = 'NginxCheckError';
    this.output = output;
  }
}

/**
 * `check_cmd` rejects another app's live file whatever this app's candidate
 * is (it fails without the candidate too): a file changed by hand, or an
 * nginx that no longer accepts it. Not the commit's doing; nothing was
 * changed.
 */
export class NginxConfBrokenError extends SlipwayError {
  readonly output: string;

  constructor(app: string, file: string, output: string) {
    super('nginx_conf_broken', `nginx rejects ${file}, which is not ${app}'s and fails without ${app}'s candidate too (nothing was changed; fix that file):\n${output}`);
    this.name = 'NginxConfBrokenError';
    this.output = output;
  }
}

/** `check_cmd` could not run (missing, or killed at its timeout): no verdict on the candidate, so nothing was changed. */
export class NginxCheckNotRunError extends SlipwayError {
  constructor(app: string, options: { cause: CommandError }) {
    super('nginx_check_not_run', `could not check ${app}'s candidate nginx config: ${options.cause.message} (nothing was changed)`, options);
    this.name = 'NginxCheckNotRunError';
  }
}

/** `reload_cmd` failed; the previous file was put back. */
export class NginxReloadError extends SlipwayError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('nginx_reload_failed', message, options);
    this.name = 'NginxReloadError';
  }
}

/** An app's own template cannot be read or uses an unknown placeholder. */
export class TemplateError extends SlipwayError {
  constructor(message: string) {
    super('template_invalid', message, { fault: 'commit' });
    this.name = 'TemplateError';
  }
}
