import { Router, type Request, type Response } from 'express';
import type { AuthLocals } from './auth.js';

// The HTML the server sends: a shell per page that the page's script fills
// (src/web), the sign-in form, and the not-found page. The few values in
// them (a title, the CSRF token, the job id, where to go after signing in)
// are escaped; there is no other markup built from data.

type PageName = 'overview' | 'jobs' | 'job';

interface PageShellOptions {
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

const NOT_FOUND_PAGE = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found · Slipway</title><link rel="stylesheet" href="/assets/styles.css"></head><body><main id="main"><h1>Not found</h1><p><a href="/">Back to the overview</a></p></main></body></html>';
const HTML_ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** The three pages: `/` (apps overview), `/jobs` (filters in the query string), `/jobs/:id`; then not found for anything else. */
export function pages(): Router {
  const router = Router();
  const send = (res: Response, page: PageName, title: string, data?: Record<string, string>) => {
    const auth = (res.locals as AuthLocals).auth;
    res.setHeader('Cache-Control', 'no-store');
    res.type('html').send(pageShell({
      page, title, data,
      csrf: auth.kind === 'session' ? auth.session.csrf : '',
      signedInWithCookie: auth.kind === 'session',
    }));
  };
  router.get('/', (_req: Request, res: Response) => send(res, 'overview', 'Apps'));
  router.get('/jobs', (_req: Request, res: Response) => send(res, 'jobs', 'Jobs'));
  router.get('/jobs/:id', (req: Request<{ id: string }>, res: Response) => {
    // The page says "no such job" itself; a malformed id is known to be missing already.
    if (!/^\d{1,15}$/.test(req.params.id)) res.status(404);
    send(res, 'job', `Job ${req.params.id}`, { 'job-id': req.params.id });
  });
  router.use((_req: Request, res: Response) => {
    res.status(404).type('html').send(NOT_FOUND_PAGE);
  });
  return router;
}

/**
 * The HTML every page starts from: header, navigation, a main landmark the
 * page script fills, and a polite live region for announcements. The CSRF
 * token rides in a meta tag (no inline script: the CSP forbids them).
 */
function pageShell(options: PageShellOptions): string {
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

/** The sign-in page: a plain form that works without JavaScript. */
export function signInPage(options: { next: string; error?: string }): string {
  const error = options.error
    ? `<p class="form-error" id="token-error" role="alert">${escapeHtml(options.error)}</p>`
    : '';
  const describedBy = options.error ? ' aria-describedby="token-help token-error" aria-invalid="true"' : ' aria-describedby="token-help"';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Slipway</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/styles.css">
</head>
<body class="sign-in">
<main id="main" class="sign-in-card">
<h1><img class="brand-mark" src="/assets/favicon.svg" alt="" width="22" height="22"> Slipway</h1>
<form method="post" action="/sign-in" class="sign-in-form">
<input type="hidden" name="next" value="${escapeHtml(options.next)}">
<input type="text" name="username" value="slipway" autocomplete="username" hidden>
<label for="token">Dashboard token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus${describedBy}>
<p id="token-help" class="hint">The <code>dashboard.token</code> of this server’s slipway.yml.</p>
${error}
<button type="submit" class="button primary">Sign in</button>
</form>
</main>
</body>
</html>
`;
}

/** Text safe inside HTML content and quoted attributes. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ENTITIES[c]!);
}
