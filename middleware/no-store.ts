import type { NextFunction, Request, Response } from 'express';

/**
 * `Cache-Control: no-store` on every answer: each is per user (tokens,
 * account pages, forms with a CSRF token) or live state (health). Mounted
 * once, first; a route that is truly cacheable (static files) sets its own.
 */
export function noStore(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Cache-Control', 'no-store');
  next();
}

/** Takes {@link noStore}'s header off again, for answers that set their own caching (serve-static keeps one already set). */
export function dropNoStore(_req: Request, res: Response, next: NextFunction): void {
  res.removeHeader('Cache-Control');
  next();
}
