import { formatDuration } from './format-duration.js';
import type { NotificationPayload } from './notification-payload.js';
import { shortText } from './short-text.js';

/** A Slack incoming-webhook message (`text`, the fallback, and Block Kit `blocks`). */
export interface SlackMessage {
  text: string;
  blocks: Array<Record<string, unknown>>;
}

const ICONS = { failure: ':x:', recovery: ':white_check_mark:', success: ':rocket:' } as const;

/** Slack's mrkdwn needs only these three escaped. */
const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * The message for a notification: one line saying what happened (the
 * fallback `text`, shown in alerts), and blocks with links to the job and
 * the compare view, the commit's first line and who pushed.
 */
export function slackMessage(payload: NotificationPayload): SlackMessage {
  const commit = payload.sha ? payload.sha.slice(0, 7) : payload.image ?? 'image';
  const took = payload.durationSeconds === null ? null : formatDuration(payload.durationSeconds * 1000);
  const error = payload.error ? `: ${shortText(payload.error, 300)}` : '';
  const what = {
    failure: `${payload.outcome === 'error' ? 'could not deploy' : 'deploy failed'} at ${payload.step}${took ? ` after ${took}` : ''}${error}`,
    recovery: `recovered: deployed${took ? ` in ${took}` : ''}`,
    success: `deployed${took ? ` in ${took}` : ''}`,
  }[payload.event];
  const text = escape(`${payload.app} ${commit}: ${what} (job ${payload.job})`);

  const links = [`<${payload.links.job}|job ${payload.job}>`];
  if (payload.links.compare) links.push(`<${payload.links.compare}|compare>`);
  const context: string[] = [];
  if (payload.message) context.push(escape(shortText(payload.message.split('\n', 1)[0]!, 150)));
  if (payload.pusher) context.push(`pushed by ${escape(payload.pusher)}`);
  context.push(`${payload.trigger}${payload.ref ? ` on ${escape(payload.ref)}` : ''}`);
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `${ICONS[payload.event]} *${escape(payload.app)}* \`${escape(commit)}\` ${escape(what)}\n${links.join(' · ')}` } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: context.join(' · ') }] },
    ],
  };
}
