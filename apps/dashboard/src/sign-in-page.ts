import { escapeHtml } from './escape-html.js';

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
