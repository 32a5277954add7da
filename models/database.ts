import path from 'node:path';
import { Sequelize, type Options } from 'sequelize';
import { projectRoot } from '../paths.js';
import { defineAuditEvent, type AuditEventModel } from './audit-event.js';
import { defineSession, type SessionModel } from './session.js';
import { defineSessionRevocation, type SessionRevocationModel } from './session-revocation.js';
import { defineUser, type UserModel } from './user.js';

export interface Database {
  readonly sequelize: Sequelize;
  readonly users: UserModel;
  readonly sessions: SessionModel;
  readonly auditEvents: AuditEventModel;
  readonly sessionRevocations: SessionRevocationModel;
  readonly dialect: 'sqlite' | 'postgres';
  /** True when a trivial query succeeds within `timeoutMs` (default 2 s). */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/** How long a SQLite writer waits for another's lock before failing with SQLITE_BUSY. */
const SQLITE_BUSY_TIMEOUT_MS = 10_000;

interface SqliteHandle {
  configure(option: 'busyTimeout', ms: number): void;
  exec(sql: string, cb: (err: Error | null) => void): void;
}

/**
 * Opens (but does not migrate) the database named by a `DATABASE_URL`.
 * Relative SQLite paths are resolved against the project folder.
 */
export async function openDatabase(url: string, options: { poolMax?: number } = {}): Promise<Database> {
  const common: Options = { logging: false, define: { underscored: true } };
  let sequelize: Sequelize;
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length);
    const storage = file === ':memory:' ? ':memory:' : path.resolve(projectRoot, file);
    sequelize = new Sequelize({ ...common, dialect: 'sqlite', storage });
    configureSqliteConnections(sequelize, storage === ':memory:');
  } else {
    sequelize = new Sequelize(url, { ...common, dialect: 'postgres', pool: { max: options.poolMax ?? 10 } });
  }
  await sequelize.authenticate();
  const users = defineUser(sequelize);
  const sessions = defineSession(sequelize);
  const auditEvents = defineAuditEvent(sequelize);
  const sessionRevocations = defineSessionRevocation(sequelize);
  return {
    sequelize,
    users,
    sessions,
    auditEvents,
    sessionRevocations,
    dialect: sequelize.getDialect() === 'postgres' ? 'postgres' : 'sqlite',
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
    close: () => sequelize.close(),
  };
}

/**
 * Sequelize's SQLite driver opens a connection per transaction and runs no
 * connect hooks, so every new handle is configured here: WAL lets readers and
 * one writer work at once, and the busy timeout makes writers queue instead of
 * failing with SQLITE_BUSY when several connections or processes write.
 */
function configureSqliteConnections(sequelize: Sequelize, inMemory: boolean): void {
  const manager = sequelize.connectionManager as unknown as {
    getConnection(options?: unknown): Promise<SqliteHandle>;
  };
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
