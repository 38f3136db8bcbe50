import type { Request, Response } from 'express';

/** A refusal in the form its client reads: `{error, message}` JSON under /api, one line of text elsewhere (pages, assets). */
export function sendError(req: Request, res: Response, status: number, code: string, message: string): void {
  res.setHeader('Cache-Control', 'no-store');
  if (req.path === '/api' || req.path.startsWith('/api/')) res.status(status).json({ error: code, message });
  else res.status(status).type('text/plain').send(`${message}\n`);
}
