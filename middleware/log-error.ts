import { BaseError, ConnectionError, ValidationError } from 'sequelize';

/**
 * What a log line says about an error: an allow-list, never the error
 * object itself. pino's own serializer copies every enumerable property, and
 * a Sequelize error carries its SQL, bind parameters, the values that broke a
 * constraint (`fields`, `errors[].value`) and the driver's error (`parent`,
 * `original`): session ids, session data, usernames.
 */
export interface LoggedError {
  /** The error's name, e.g. `TypeError`, `SequelizeUniqueConstraintError`. */
  type: string;
  message: string;
  /** A short identifier such as `ECONNREFUSED`, `SQLITE_CONSTRAINT` or PostgreSQL's `23505`. */
  code?: string;
  stack?: string;
}

/** Said instead of a database's own message, which can quote values (`no such column: …`, `invalid input syntax … "…"`). */
export const WITHHELD_DATABASE_MESSAGE = 'database error (its message is not logged: it can quote values)';

const CODE = /^[\w.:-]{1,64}$/;
const IDENTIFIER = /^[A-Za-z_][\w.]{0,63}$/;
const FRAME = /^\s+at /;

/** Objects this module made: passed through again untouched (call sites and the logger's serializer both apply it). */
const made = new WeakSet<object>();

/**
 * The allow-listed view of anything thrown: `type`, `message`, `code` (when
 * a string) and `stack`. For a database error (Sequelize's, or the sqlite3 or
 * pg driver's own) the message is replaced unless it cannot quote a value: a
 * validation error says which columns, a connection error keeps its message,
 * anything else is {@link WITHHELD_DATABASE_MESSAGE}; the stack keeps only its
 * frames under that message.
 *
 * @example
 * logger.error({ err: errorForLog(err) }, 'failed');
 */
export function errorForLog(value: unknown): LoggedError {
  if (typeof value === 'object' && value !== null && made.has(value)) return value as LoggedError;
  const logged = Object.create(null) as LoggedError;
  made.add(logged);
  if (typeof value !== 'object' || value === null) {
    logged.type = typeof value;
    logged.message = String(value);
    return logged;
  }
  const e = value as { name?: unknown; message?: unknown; code?: unknown; stack?: unknown; parent?: { code?: unknown } };
  logged.type = typeof e.name === 'string' && e.name ? e.name : (value.constructor?.name ?? 'object');
  const message = typeof e.message === 'string' ? e.message : '';
  const code = typeof e.code === 'string' ? e.code : value instanceof BaseError ? e.parent?.code : undefined;
  if (typeof code === 'string' && CODE.test(code)) logged.code = code;
  const safeMessage = databaseMessage(value);
  if (safeMessage === undefined) {
    logged.message = message;
    if (typeof e.stack === 'string') logged.stack = e.stack;
  } else {
    logged.message = safeMessage;
    if (typeof e.stack === 'string') logged.stack = [`${logged.type}: ${safeMessage}`, ...e.stack.split('\n').filter((l) => FRAME.test(l))].join('\n');
  }
  return logged;
}

/** For a database error, the message that may be logged; undefined for any other error. */
function databaseMessage(err: object): string | undefined {
  if (err instanceof ValidationError) {
    // "Validation error" plus the columns or attributes (schema names, checked to be plain identifiers).
    const paths = [...new Set((err.errors ?? []).map((item) => item.path).filter((p): p is string => typeof p === 'string' && IDENTIFIER.test(p)))];
    return paths.length ? `Validation error on ${paths.join(', ')}` : 'Validation error';
  }
  // About reaching the server (refused, closed, timed out before any query ran): no query, no values.
  if (err instanceof ConnectionError) return err.message;
  if (err instanceof BaseError || isDriverError(err)) return WITHHELD_DATABASE_MESSAGE;
  return undefined;
}

/** The sqlite3 driver's errors (`code: 'SQLITE_…'`, used directly on two hot paths) and pg's (`severity` and a SQLSTATE). */
function isDriverError(err: object): boolean {
  const e = err as { code?: unknown; severity?: unknown };
  if (typeof e.code !== 'string') return false;
  return e.code.startsWith('SQLITE_') || (typeof e.severity === 'string' && /^[0-9A-Z]{5}$/.test(e.code));
}
