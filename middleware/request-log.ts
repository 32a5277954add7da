import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { LogLevel } from '../config.js';
import { errorForLog } from './log-error.js';

/** The app's structured logger: JSON lines on stdout, or on `destination` (tests). */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { app: 'token-bridge' },
    // Belt and braces: the request line never includes these, and nothing else may either.
    redact: { paths: ['password', '*.password', 'token', '*.token', 'headers.authorization', 'headers.cookie', '*.headers.cookie', '*.headers.authorization'], censor: '[redacted]' },
    // Any error logged as `err`, by any module, is reduced to an allow-list (a Sequelize error
    // carries its SQL, bind parameters and the values that broke a constraint).
    serializers: { err: errorForLog },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A password-reset link's path (Express matches routes case-insensitively): its last segment is a secret. */
const RESET_LINK_PATH = /^(\/auth\/reset\/)[^/]+/i;

/**
 * The path as the request line records it: no query string, and a reset
 * link's token written as its route parameter.
 *
 * @example
 * loggedPath('/auth/reset/Xq3…?a=1') // '/auth/reset/:token'
 */
export function loggedPath(url: string): string {
  return (url.split('?')[0] ?? '').replace(RESET_LINK_PATH, '$1:token');
}

/** The response header that carries the request's id. */
export const REQUEST_ID_HEADER = 'X-Request-Id';

/**
 * Gives every request an id (`req.id`, a random UUID, also sent back as
 * `X-Request-Id`) and writes one line per finished request: `{req: {id,
 * method, path}, res: {status}, responseTime}` — the path without its query
 * string (it could carry secrets) and with a reset link's token replaced (see
 * {@link loggedPath}), no headers, cookies or bodies. A 5xx
 * carries the error that the error handler left in `res.locals.error`, reduced
 * to {@link errorForLog}'s allow-list.
 *
 * An incoming `X-Request-Id` is ignored: a client could put anything in it
 * (another request's id, text that forges log lines).
 *
 * Hand-rolled rather than pino-http: that builds a child logger with
 * serialized bindings for every request, which profiling showed as the
 * largest single cost of an authenticated API call.
 */
export function requestLogger(logger: Logger): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const start = performance.now();
    const id = randomUUID();
    req.id = id;
    req.log = logger;
    res.setHeader(REQUEST_ID_HEADER, id);
    // A response emits 'close' once, after 'finish' or when the client went away first.
    res.on('close', () => {
      const err: unknown = res.locals.error;
      const failed = Boolean(err) || res.statusCode >= 500;
      // Below `info`, a successful request costs one listener and nothing else.
      if (!failed && !logger.isLevelEnabled('info')) return;
      const responseTime = Math.round(performance.now() - start);
      const line = {
        req: { id, method: req.method, path: loggedPath(req.originalUrl || req.url) },
        res: { status: res.statusCode },
        responseTime,
      };
      if (failed) {
        logger.error({ ...line, err: errorForLog(err ?? new Error(`failed with status code ${res.statusCode}`)) }, `${req.method} ${res.statusCode} failed`);
      } else if (!res.writableFinished) {
        logger.info(line, `${req.method} ${res.statusCode} aborted by the client after ${responseTime}ms`);
      } else {
        logger.info(line, `${req.method} ${res.statusCode} ${responseTime}ms`);
      }
    });
    next();
  };
}
