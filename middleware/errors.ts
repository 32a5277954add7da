import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import { AppError, NotFoundError } from '../errors.js';
import { isDatabaseUnavailable } from '../models/database.js';

interface ErrorView {
  status: number;
  code: string;
  message: string;
  headers: Readonly<Record<string, string>>;
}

const GENERIC: ErrorView = { status: 500, code: 'internal_error', message: 'Something went wrong on our side.', headers: {} };

/** Maps anything thrown to what the client may see. Unknown errors never leak their message. */
export function describeError(err: unknown): ErrorView {
  if (err instanceof AppError) return { status: err.status, code: err.code, message: err.message, headers: err.headers };
  if (isDatabaseUnavailable(err)) {
    return { status: 503, code: 'service_unavailable', message: 'The service is briefly unavailable. Try again shortly.', headers: { 'Retry-After': '5' } };
  }
  const e = err as { status?: unknown; expose?: unknown; type?: unknown; code?: unknown } | null;
  if (e && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    if (e.code === 'EBADCSRFTOKEN') {
      return { status: 403, code: 'csrf_failed', message: 'This form has expired or did not come from this site. Reload the page and try again.', headers: {} };
    }
    if (e.type === 'entity.too.large') return { status: 413, code: 'payload_too_large', message: 'The request body is too large.', headers: {} };
    if (e.type === 'entity.parse.failed') return { status: 400, code: 'bad_request', message: 'The request body is not valid JSON.', headers: {} };
    if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') {
      return { status: 415, code: 'unsupported_media_type', message: 'The request body encoding is not supported.', headers: {} };
    }
    return { status: e.status, code: 'bad_request', message: 'The request is not valid.', headers: {} };
  }
  return GENERIC;
}

/** JSON for API clients and the token endpoint; HTML pages for browsers. */
export function wantsJson(req: Request): boolean {
  // Express matches mounts and routes case-insensitively, so /API/me is an API request too.
  const path = (req.originalUrl.split('?')[0] ?? '').toLowerCase();
  if (path === '/api' || path.startsWith('/api/') || path === '/auth/token') return true;
  return req.accepts(['html', 'json']) === 'json';
}

export const notFound: RequestHandler = () => {
  throw new NotFoundError();
};

/** The single error handler, mounted last. */
export const errorHandler: ErrorRequestHandler = (err, req, res, _next) => {
  if (res.headersSent) {
    // E.g. the session store failed to save after the page went out. Express's own handler would
    // print the whole error (SQL and bind parameters included) to stderr: log one line instead.
    req.log?.error({ err: { type: (err as Error)?.name, message: (err as Error)?.message } }, 'failed after the response was sent');
    if (!res.writableEnded) res.destroy();
    return;
  }
  const view = describeError(err);
  // The request logger writes the request's one log line with this error and its stack.
  if (view.status >= 500) res.locals.error = err instanceof Error ? err : new Error(String(err));
  res.set(view.headers);
  res.set('Cache-Control', 'no-store');
  res.status(view.status);
  if (wantsJson(req)) {
    res.json({ error: view.code, message: view.message });
  } else {
    const title = titleFor(view.status);
    res.render('error', { title, status: view.status, message: view.message }, (renderErr: Error | null, html?: string) => {
      // A broken view must not fall through to Express's default handler (which shows a stack).
      if (renderErr) {
        req.log?.error({ err: renderErr }, 'error page failed to render');
        res.type('text/plain').send(`${title}: ${view.message}`);
      } else {
        res.send(html);
      }
    });
  }
};

function titleFor(status: number): string {
  if (status === 404) return 'Page not found';
  if (status === 403) return 'Not allowed';
  if (status === 503) return 'Briefly unavailable';
  if (status >= 500) return 'Something went wrong';
  return 'That did not work';
}
