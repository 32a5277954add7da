import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { csrfSync } from 'csrf-sync';

export interface Csrf {
  /** Rejects POST/PUT/PATCH/DELETE without the session's token (403). */
  protect: RequestHandler;
  /** Makes `csrfToken` available to views; the token is created only when a view reads it. */
  exposeToken: RequestHandler;
}

/**
 * Synchronizer-token CSRF protection (csrf-sync): one token per session, kept
 * in the session, sent back by forms as `_csrf` (or `x-csrf-token` by scripts).
 */
export function createCsrf(): Csrf {
  const { csrfSynchronisedProtection, generateToken } = csrfSync({
    getTokenFromRequest: (req) => {
      const fromBody: unknown = (req.body as Record<string, unknown> | undefined)?._csrf;
      if (typeof fromBody === 'string') return fromBody;
      const fromHeader = req.headers['x-csrf-token'];
      return typeof fromHeader === 'string' ? fromHeader : undefined;
    },
    size: 32,
    errorConfig: { statusCode: 403, message: 'invalid csrf token', code: 'EBADCSRFTOKEN' },
  });
  return {
    protect: csrfSynchronisedProtection,
    exposeToken: (req: Request, res: Response, next: NextFunction) => {
      // res.render copies every enumerable local (which would run a getter), so the
      // token is an object that becomes the string only where a view prints it.
      // Pages without a form (an anonymous home or error page) then create no session.
      res.locals.csrfToken = lazyToken(() => generateToken(req));
      next();
    },
  };
}

/**
 * A value that `<%= %>`, template literals and `String()` turn into the current
 * session's token, creating it on first use (read afresh, so a session renewed
 * mid-request gets its own token).
 */
function lazyToken(current: () => string): { toString(): string } {
  return { toString: current, toJSON: current, [Symbol.toPrimitive]: current } as { toString(): string };
}
