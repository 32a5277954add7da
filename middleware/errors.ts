import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import {
  AppError,
  BadRequestError,
  CsrfError,
  InternalError,
  NotFoundError,
  PayloadTooLargeError,
  RejectedRequestError,
  ServiceUnavailableError,
  UnsupportedMediaTypeError,
} from '../errors.js';
import { isDatabaseUnavailable } from '../models/database.js';
import type { ErrorBody } from '../routes/api-schemas.js';
import { errorForLog } from './log-error.js';

/**
 * Maps anything thrown to an error of the catalogue: ours as they are, the
 * foreign ones (body-parser's, csrf-sync's, the database's) to the matching
 * case, anything else to {@link InternalError}. A foreign error's own message
 * never reaches the client.
 */
export function describeError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (isDatabaseUnavailable(err)) return new ServiceUnavailableError();
  const e = err as { status?: unknown; type?: unknown; code?: unknown } | null;
  if (e && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    if (e.code === 'EBADCSRFTOKEN') return new CsrfError();
    if (e.type === 'entity.too.large') return new PayloadTooLargeError();
    if (e.type === 'entity.parse.failed') return new BadRequestError('The request body is not valid JSON.');
    if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') return new UnsupportedMediaTypeError();
    return new RejectedRequestError(e.status);
  }
  return new InternalError();
}

/** Routes outside /api that answer JSON only: errors there are JSON whatever `Accept` says (the passkey ceremonies are fetch() calls). */
const JSON_PATHS: ReadonlySet<string> = new Set(['/auth/token', '/auth/introspect', '/auth/passkey/options', '/auth/passkey', '/account/passkeys/options', '/account/passkeys']);

/** JSON for API clients, the token endpoint and the passkey ceremonies; HTML pages for browsers. */
export function wantsJson(req: Request): boolean {
  // Express matches mounts and routes case-insensitively, so /API/me is an API request too.
  const path = (req.originalUrl.split('?')[0] ?? '').toLowerCase();
  if (path === '/api' || path.startsWith('/api/') || JSON_PATHS.has(path)) return true;
  return req.accepts(['html', 'json']) === 'json';
}

/** What the client reads for an error we did not mean to show. */
const INTERNAL_MESSAGE = new InternalError().message;

export const notFound: RequestHandler = () => {
  throw new NotFoundError();
};

/** The single error handler, mounted last. */
export const errorHandler: ErrorRequestHandler = (err, req, res, _next) => {
  if (res.headersSent) {
    // E.g. the session store failed to save after the page went out. Express's own handler would
    // print the whole error (SQL and bind parameters included) to stderr: log one line instead.
    req.log?.error({ req: { id: req.id }, err: errorForLog(err) }, 'failed after the response was sent');
    if (!res.writableEnded) res.destroy();
    return;
  }
  const error = describeError(err);
  // The request logger writes the request's one log line with this error and its stack.
  if (error.status >= 500) res.locals.error = err instanceof Error ? err : new Error(String(err));
  const message = error.expose ? error.message : INTERNAL_MESSAGE;
  res.set(error.headers);
  res.set('Cache-Control', 'no-store');
  res.status(error.status);
  if (wantsJson(req)) {
    const body: ErrorBody = { error: error.publicCode, message };
    res.json(body);
  } else {
    const title = titleFor(error.status);
    res.render('error', { title, status: error.status, message }, (renderErr: Error | null, html?: string) => {
      // A broken view must not fall through to Express's default handler (which shows a stack).
      if (renderErr) {
        req.log?.error({ req: { id: req.id }, err: errorForLog(renderErr) }, 'error page failed to render');
        res.type('text/plain').send(`${title}: ${message}`);
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
