import path from 'node:path';
import { ConnectionError, QueryTypes, Sequelize, TimeoutError, Transaction, type Options } from 'sequelize';
import { projectRoot } from '../paths.js';
import { defineApiClient, type ApiClientModel } from './api-client.js';
import { noChangeFeed, PostgresChangeFeed, type ChangeFeed } from './change-feed.js';
import { defineAuditEvent, type AuditEventModel } from './audit-event.js';
import { defineSession, type SessionModel } from './session.js';
import { defineSessionRevocation, type SessionRevocationModel } from './session-revocation.js';
import { definePasskey, type PasskeyModel } from './passkey.js';
import { defineSigningKey, type SigningKeyModel } from './signing-key.js';
import { definePasswordReset, defineRecoveryCode, defineTotpCredential, type PasswordResetModel, type RecoveryCodeModel, type TotpCredentialModel } from './two-factor.js';
import { defineUser, type UserModel } from './user.js';

export interface Database {
  /** The `DATABASE_URL` this was opened with (a secret when it holds a password: never log it). */
  readonly url: string;
  readonly sequelize: Sequelize;
  readonly users: UserModel;
  readonly sessions: SessionModel;
  readonly auditEvents: AuditEventModel;
  readonly sessionRevocations: SessionRevocationModel;
  /** The ES256/RS256 key set (services/signing-keys.ts). */
  readonly signingKeys: SigningKeyModel;
  /** Clients of the introspection endpoint (services/api-clients.ts). */
  readonly apiClients: ApiClientModel;
  /** Two-factor authentication and account recovery (services/two-factor.ts, services/password-reset.ts). */
  readonly totpCredentials: TotpCredentialModel;
  readonly recoveryCodes: RecoveryCodeModel;
  readonly passwordResets: PasswordResetModel;
  /** WebAuthn credentials (services/passkeys.ts). */
  readonly passkeys: PasskeyModel;
  readonly dialect: 'sqlite' | 'postgres';
  /** How instances tell each other to drop cached answers: LISTEN/NOTIFY on PostgreSQL, nothing on SQLite. Closed by `close()`. */
  readonly changes: ChangeFeed;
  /**
   * The stored data of one session, or null: the one query on every signed-in
   * page and token mint, so it skips the ORM where that is costly (see
   * {@link sessionDataReader}).
   */
  readSessionData(sid: string): Promise<string | null>;
  /** One multi-row INSERT of plain rows (column names as in the table); the audit log's group commit. */
  insertRows(table: string, rows: readonly Record<string, SqlValue>[]): Promise<void>;
  /** True when a trivial query succeeds within `timeoutMs` (default 2 s). */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/** How long a SQLite writer waits for another's lock before failing with SQLITE_BUSY. */
const SQLITE_BUSY_TIMEOUT_MS = 10_000;
/** Default most connections per process to PostgreSQL (`DB_POOL_MAX`). */
export const DEFAULT_POOL_MAX = 10;
/**
 * Default of how long a request waits for a free pooled PostgreSQL connection
 * (`DB_ACQUIRE_TIMEOUT`), and how long opening one may take, before it fails
 * (503) instead of hanging: the Sequelize default is 60 s.
 */
export const POOL_ACQUIRE_TIMEOUT_MS = 5_000;
export const CONNECT_TIMEOUT_MS = 5_000;
/**
 * Default longest run of one PostgreSQL statement (`DB_STATEMENT_TIMEOUT`):
 * the server cancels it (57014) and the request answers 503 instead of
 * holding a connection for as long as a lock or a runaway plan lasts.
 */
export const STATEMENT_TIMEOUT_MS = 10_000;
/**
 * How much longer than the statement timeout the client waits for any answer
 * before giving the connection up ("Query read timeout"). The server's own
 * cancel comes first and keeps the connection; this one is for a server that
 * cannot answer at all (a silent network partition: no reset, no reply).
 */
export const QUERY_TIMEOUT_MARGIN_MS = 2_000;

export type SqlValue = string | number | boolean | Date | null;

interface SqliteHandle {
  configure(option: 'busyTimeout', ms: number): void;
  exec(sql: string, cb: (err: Error | null) => void): void;
  get<Row>(sql: string, params: unknown[], cb: (err: Error | null, row: Row | undefined) => void): void;
  run(sql: string, params: unknown[], cb: (err: Error | null) => void): void;
}

interface SqliteConnectionManager {
  getConnection(options?: unknown): Promise<SqliteHandle>;
}

/** Sequelize's SQLite connection manager, typed for what this file uses (the shared connection). */
function sqliteManager(sequelize: Sequelize): SqliteConnectionManager {
  return sequelize.connectionManager as unknown as SqliteConnectionManager;
}

const SESSION_DATA_SQL = 'SELECT data FROM sessions WHERE sid = ?';

export interface OpenOptions {
  /** Most pooled PostgreSQL connections (`DB_POOL_MAX`). */
  poolMax?: number;
  /** How long a query waits for a pooled PostgreSQL connection (`DB_ACQUIRE_TIMEOUT`). */
  acquireTimeoutMs?: number;
  /**
   * Longest run of one PostgreSQL statement (`DB_STATEMENT_TIMEOUT`); the
   * client gives up {@link QUERY_TIMEOUT_MARGIN_MS} later. 0: no limit (the
   * migrations' own connection, where DDL on a large table may take longer).
   */
  statementTimeoutMs?: number;
  /**
   * How this process hears of other instances' changes. Default: LISTEN/NOTIFY
   * on PostgreSQL, none on SQLite (server.ts gives SQLite cluster workers the
   * IPC feed through their primary).
   */
  changes?: ChangeFeed;
}

/**
 * Opens (but does not migrate) the database named by a `DATABASE_URL`.
 * Relative SQLite paths are resolved against the project folder.
 */
export async function openDatabase(url: string, options: OpenOptions = {}): Promise<Database> {
  const common: Options = { logging: false, define: { underscored: true } };
  let sequelize: Sequelize;
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length);
    const storage = file === ':memory:' ? ':memory:' : path.resolve(projectRoot, file);
    // IMMEDIATE: a transaction takes the write lock when it begins, so a read-then-write
    // transaction waits its turn (busy timeout) instead of failing at once with
    // SQLITE_BUSY when another process wrote in between (WAL snapshot conflict).
    sequelize = new Sequelize({ ...common, dialect: 'sqlite', storage, transactionType: Transaction.TYPES.IMMEDIATE });
    configureSqliteConnections(sequelize, storage === ':memory:');
  } else {
    const statementTimeoutMs = options.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS;
    sequelize = new Sequelize(url, {
      ...common,
      dialect: 'postgres',
      pool: { max: options.poolMax ?? DEFAULT_POOL_MAX, min: 0, acquire: options.acquireTimeoutMs ?? POOL_ACQUIRE_TIMEOUT_MS, idle: 10_000, evict: 1_000 },
      dialectOptions: {
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        keepAlive: true,
        application_name: 'token-bridge',
        ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs, query_timeout: statementTimeoutMs + QUERY_TIMEOUT_MARGIN_MS } : {}),
      },
    });
  }
  try {
    await sequelize.authenticate();
  } catch (err) {
    await sequelize.close().catch(() => undefined);
    throw err;
  }
  const users = defineUser(sequelize);
  const sessions = defineSession(sequelize);
  const auditEvents = defineAuditEvent(sequelize);
  const sessionRevocations = defineSessionRevocation(sequelize);
  const signingKeys = defineSigningKey(sequelize);
  const apiClients = defineApiClient(sequelize);
  const totpCredentials = defineTotpCredential(sequelize);
  const recoveryCodes = defineRecoveryCode(sequelize);
  const passwordResets = definePasswordReset(sequelize);
  const passkeys = definePasskey(sequelize);
  const dialect = sequelize.getDialect() === 'postgres' ? 'postgres' : 'sqlite';
  const changes = options.changes ?? (dialect === 'postgres' ? new PostgresChangeFeed(url, sequelize) : noChangeFeed);
  return {
    url,
    sequelize,
    users,
    sessions,
    auditEvents,
    sessionRevocations,
    signingKeys,
    apiClients,
    totpCredentials,
    recoveryCodes,
    passwordResets,
    passkeys,
    dialect,
    changes,
    readSessionData: sessionDataReader(sequelize),
    insertRows: rowInserter(sequelize),
    async ping(timeoutMs = 2000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      try {
        return await Promise.race([sequelize.query('SELECT 1').then(() => true), timeout]);
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      await changes.close();
      await sequelize.close();
    },
  };
}

/**
 * PostgreSQL error classes that mean "the server is not there or not keeping
 * up right now", not "this query is wrong": connection exception, query
 * cancelled (statement_timeout), shutdown, cannot connect now, too many connections.
 */
const PG_UNAVAILABLE = /^(08|57014|57P0[1-3]|53300|53400)/;
const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
// "Query read timeout" is pg's client-side query_timeout: no answer at all from the server.
const UNAVAILABLE_MESSAGES =
  /Connection terminated|not queryable|Client was closed|connection manager was closed|pool is draining|Connection timed out|Query read timeout/i;

/**
 * True when an error means the database is briefly unreachable or busy (answer
 * 503 and let the client retry), rather than a bug (500): Sequelize's
 * connection and pool-acquire errors, SQLite lock timeouts, PostgreSQL
 * connections cut under a running query (server restart, `pg_terminate_backend`,
 * network loss), and PostgreSQL statements that ran out of time (the server's
 * `statement_timeout`, or the client's `query_timeout` when the server never
 * answers), which Sequelize reports as plain DatabaseErrors.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (err instanceof ConnectionError || err instanceof TimeoutError) return true;
  if (!err || typeof err !== 'object') return false;
  const cause = ((err as { parent?: unknown }).parent ?? err) as { code?: unknown; message?: unknown };
  const code = typeof cause.code === 'string' ? cause.code : '';
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return true;
  if (PG_UNAVAILABLE.test(code) || NETWORK_CODES.has(code)) return true;
  return typeof cause.message === 'string' && UNAVAILABLE_MESSAGES.test(cause.message);
}

/**
 * Reads a session's data column by primary key.
 *
 * On SQLite, Sequelize's query path formats a stack trace on every query
 * (it keeps one for error messages) and cost about 230 µs of CPU per lookup,
 * against about 40 µs for the driver's own one-shot prepared statement
 * (prepared, run and finalized, so no read transaction is left open). The
 * query is fixed and the id is a bound parameter. PostgreSQL keeps the ORM's
 * path, whose overhead there is small.
 */
function sessionDataReader(sequelize: Sequelize): (sid: string) => Promise<string | null> {
  if (sequelize.getDialect() !== 'sqlite') {
    return async (sid) => {
      const rows = await sequelize.query<{ data: string }>(SESSION_DATA_SQL, { replacements: [sid], type: QueryTypes.SELECT });
      return rows[0]?.data ?? null;
    };
  }
  const manager = sqliteManager(sequelize);
  return async (sid) => {
    // The shared connection (configured by configureSqliteConnections), not a transaction's.
    const connection = await manager.getConnection();
    return new Promise((resolve, reject) => {
      connection.get<{ data: string }>(SESSION_DATA_SQL, [sid], (err, row) => (err ? reject(err) : resolve(row?.data ?? null)));
    });
  };
}

/**
 * Multi-row INSERT. On SQLite through the driver with bound parameters, for
 * the same reason as {@link sessionDataReader}; dates are written in the
 * exact text form Sequelize uses there (`YYYY-MM-DD HH:mm:ss.SSS +00:00`), so
 * the ORM reads, orders and compares them as its own. PostgreSQL uses the
 * ORM's bulk insert.
 */
function rowInserter(sequelize: Sequelize): Database['insertRows'] {
  if (sequelize.getDialect() !== 'sqlite') {
    return async (table, rows) => {
      if (rows.length > 0) await sequelize.getQueryInterface().bulkInsert(table, rows.map((row) => ({ ...row })));
    };
  }
  const manager = sqliteManager(sequelize);
  const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;
  return async (table, rows) => {
    const columns = Object.keys(rows[0] ?? {});
    if (columns.length === 0) return;
    const tuple = `(${columns.map(() => '?').join(', ')})`;
    const sql = `INSERT INTO ${quote(table)} (${columns.map(quote).join(', ')}) VALUES ${rows.map(() => tuple).join(', ')}`;
    const params = rows.flatMap((row) => columns.map((c) => sqliteValue(row[c] ?? null)));
    const connection = await manager.getConnection();
    await new Promise<void>((resolve, reject) => connection.run(sql, params, (err) => (err ? reject(err) : resolve())));
  };
}

/** A value as Sequelize stores it in SQLite: dates as UTC text, booleans as 0/1. */
export function sqliteValue(value: SqlValue): string | number | null {
  if (value instanceof Date) return value.toISOString().replace('T', ' ').replace('Z', ' +00:00');
  if (typeof value === 'boolean') return value ? 1 : 0;
  return value;
}

/**
 * Sequelize's SQLite driver opens a connection per transaction and runs no
 * connect hooks, so every new handle is configured here: WAL lets readers and
 * one writer work at once, and the busy timeout makes writers queue instead of
 * failing with SQLITE_BUSY when several connections or processes write.
 */
function configureSqliteConnections(sequelize: Sequelize, inMemory: boolean): void {
  const manager = sqliteManager(sequelize);
  const getConnection = manager.getConnection.bind(manager);
  const configured = new WeakSet<SqliteHandle>();
  manager.getConnection = async (options?: unknown) => {
    const connection = await getConnection(options);
    if (!configured.has(connection)) {
      configured.add(connection);
      connection.configure('busyTimeout', SQLITE_BUSY_TIMEOUT_MS);
      const pragmas = inMemory ? 'PRAGMA foreign_keys = ON;' : 'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;';
      await new Promise<void>((resolve, reject) => connection.exec(pragmas, (err) => (err ? reject(err) : resolve())));
    }
    return connection;
  };
}
