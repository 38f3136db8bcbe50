import { escapeHtml } from './escape-html.js';

export type PageName = 'overview' | 'jobs' | 'job';

export interface PageShellOptions {
  page: PageName;
  title: string;
  csrf: string;
  /** Shown when the session came from a Bearer token: no cookie, so no sign-out. */
  signedInWithCookie: boolean;
  /** `data-*` attributes for the page script (job id...). */
  data?: Record<string, string>;
}

const NAV: Array<{ page: PageName; href: string; label: string }> = [
  { page: 'overview', href: '/', label: 'Overview' },
  { page: 'jobs', href: '/jobs', label: 'Jobs' },
];

/**
 * The HTML every page starts from: header, navigation, a main landmark the
 * page script fills, and a polite live region for announcements. The CSRF
 * token rides in a meta tag (no inline script: the CSP forbids them).
 */
export function pageShell(options: PageShellOptions): string {
  const data = Object.entries(options.data ?? {}).map(([k, v]) => ` data-${k}="${escapeHtml(v)}"`).join('');
  const nav = NAV.map((item) => {
    const current = item.page === options.page || (item.page === 'jobs' && options.page === 'job');
    return `<li><a href="${item.href}"${current ? ' aria-current="page"' : ''}>${item.label}</a></li>`;
  }).join('');
  const signOut = options.signedInWithCookie
    ? `<form method="post" action="/sign-out" class="sign-out"><input type="hidden" name="_csrf" value="${escapeHtml(options.csrf)}"><button type="submit" class="button quiet">Sign out</button></form>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="${escapeHtml(options.csrf)}">
<title>${escapeHtml(options.title)} · Slipway</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/styles.css">
<script type="module" src="/assets/web/boot.js"></script>
</head>
<body data-page="${options.page}"${data}>
<a class="skip-link" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="/"><img class="brand-mark" src="/assets/favicon.svg" alt="" width="22" height="22"> Slipway</a>
<nav aria-label="Main"><ul>${nav}</ul></nav>
${signOut}
</header>
<main id="main" tabindex="-1">
<h1>${escapeHtml(options.title)}</h1>
<p class="loading" data-loading>Loading…</p>
<noscript><p>The dashboard needs JavaScript; the JSON API under /api works without it.</p></noscript>
</main>
<div id="announcer" class="visually-hidden" aria-live="polite" aria-atomic="true"></div>
</body>
</html>
`;
}
