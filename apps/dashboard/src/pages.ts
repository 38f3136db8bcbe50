import { Router, type Request, type Response } from 'express';
import type { AuthLocals } from './require-auth.js';
import { pageShell, type PageName } from './page-shell.js';

/** The three pages: `/` (apps overview), `/jobs` (filters in the query string), `/jobs/:id`. */
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
  return router;
}
