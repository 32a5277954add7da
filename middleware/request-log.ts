import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { LogLevel } from '../config.js';

/** The app's structured logger: JSON lines on stdout, or on `destination` (tests). */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { app: 'token-bridge' },
    // Belt and braces: the request line never includes these, and nothing else may either.
    // A Sequelize error carries its SQL and bind parameters (session ids, session data): never logged.
    redact: { paths: ['password', '*.password', 'token', '*.token', 'headers.authorization', 'headers.cookie', '*.headers.cookie', '*.headers.authorization', 'err.sql', 'err.parameters', 'err.parent', 'err.original'], censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * One line per finished request: `{req: {id, method, path}, res: {status},
 * responseTime}` — the path without its query string (it could carry
 * secrets), no headers, cookies or bodies. A 5xx carries the error (with its
 * stack) that the error handler left in `res.locals.error`.
 *
 * Hand-rolled rather than pino-http: that builds a child logger with
 * serialized bindings for every request, which profiling showed as the
 * largest single cost of an authenticated API call.
 */
export function requestLogger(logger: Logger): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const start = performance.now();
    req.log = logger;
    // A response emits 'close' once, after 'finish' or when the client went away first.
    res.on('close', () => {
      const err: unknown = res.locals.error;
      const failed = Boolean(err) || res.statusCode >= 500;
      // Below `info`, a successful request costs one listener and nothing else.
      if (!failed && !logger.isLevelEnabled('info')) return;
      const responseTime = Math.round(performance.now() - start);
      const line = {
        req: { id: randomUUID(), method: req.method, path: (req.originalUrl || req.url).split('?')[0] },
        res: { status: res.statusCode },
        responseTime,
      };
      if (failed) {
        logger.error({ ...line, err: err ?? new Error(`failed with status code ${res.statusCode}`) }, `${req.method} ${res.statusCode} failed`);
      } else if (!res.writableFinished) {
        logger.info(line, `${req.method} ${res.statusCode} aborted by the client after ${responseTime}ms`);
      } else {
        logger.info(line, `${req.method} ${res.statusCode} ${responseTime}ms`);
      }
    });
    next();
  };
}
