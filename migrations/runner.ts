import { setTimeout as sleep } from 'node:timers/promises';
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import { Umzug, type MigrationParams, type UmzugStorage } from 'umzug';
import { CONNECT_TIMEOUT_MS, isDatabaseUnavailable, openDatabase, type Database } from '../models/database.js';
import { migrations as appMigrations } from './index.js';
import type { Migration, MigrationContext } from './types.js';

export type Migrator = Umzug<MigrationContext>;

/** A named migration, as `migrations/index.ts` lists them. */
export interface MigrationEntry {
  name: string;
  up: Migration;
  down: Migration;
}

/** How long an instance waits for another one's migration run before giving up. */
export const MIGRATION_LOCK_WAIT_MS = 120_000;
/** Name of the PostgreSQL advisory lock (hashed to its key) that serialises migration runs. */
const PG_LOCK_NAME = 'token-bridge:migrations';
const META_TABLE = 'migrations_meta';

interface MetaRow extends Model {
  name: string;
}

/**
 * umzug's storage on `migrations_meta` (the table and column umzug's own
 * SequelizeStorage created, so existing databases carry on). Unlike that
 * storage it records and forgets a migration inside the migration's own
 * transaction, so on PostgreSQL a migration and its record commit or roll
 * back together.
 */
class MigrationsTable implements UmzugStorage<MigrationContext> {
  private readonly model: ModelStatic<MetaRow>;

  constructor(sequelize: Sequelize) {
    this.model = sequelize.define<MetaRow>(
      'MigrationMeta',
      { name: { type: DataTypes.STRING, allowNull: false, unique: true, primaryKey: true } },
      { tableName: META_TABLE, timestamps: false },
    );
  }

  async executed(): Promise<string[]> {
    await this.model.sync();
    const rows = await this.model.findAll({ order: [['name', 'ASC']] });
    return rows.map((row) => row.name);
  }

  async logMigration({ name, context }: MigrationParams<MigrationContext>): Promise<void> {
    await this.model.create({ name }, { transaction: context.transaction });
  }

  async unlogMigration({ name, context }: MigrationParams<MigrationContext>): Promise<void> {
    await this.model.destroy({ where: { name }, transaction: context.transaction });
  }
}

/**
 * An umzug migrator over the app's migrations (or `list`, for tests),
 * recording applied ones in `migrations_meta`.
 *
 * On PostgreSQL each migration runs in a transaction of its own, opened when
 * umzug announces it and committed once it is recorded; DDL is transactional
 * there, so a migration that fails halfway leaves nothing behind and is not
 * recorded. Each migration passes `context.transaction` to its queries. On
 * SQLite `transaction` is undefined: {@link withMigrationLock} makes the whole
 * run one transaction on the connection every query outside a transaction uses
 * (a second transaction would be a second connection, waiting for the first's lock).
 */
export function createMigrator(database: Database, list: readonly MigrationEntry[] = appMigrations): Migrator {
  const { sequelize } = database;
  const migrator = new Umzug<MigrationContext>({
    migrations: list.map(({ name, up, down }) => ({ name, up, down })),
    // A fresh context per command, so a transaction never outlives the command that opened it.
    context: () => ({ queryInterface: sequelize.getQueryInterface(), transaction: undefined }),
    storage: new MigrationsTable(sequelize),
    logger: undefined,
  });
  if (database.dialect === 'postgres') {
    const begin = async ({ context }: { context: MigrationContext }) => {
      context.transaction = await sequelize.transaction();
    };
    const commit = async ({ context }: { context: MigrationContext }) => {
      const transaction = context.transaction;
      context.transaction = undefined;
      await transaction?.commit();
    };
    migrator.on('migrating', begin);
    migrator.on('reverting', begin);
    migrator.on('migrated', commit);
    migrator.on('reverted', commit);
    // Runs after every command, also when a migration threw: whatever it left open is undone.
    migrator.on('afterCommand', async ({ context }) => {
      const transaction = context.transaction;
      context.transaction = undefined;
      // A failed rollback must not hide the migration's own error (a lost connection rolls back anyway).
      await transaction?.rollback().catch(() => undefined);
    });
  }
  return migrator;
}

/**
 * Applies every pending migration; returns the names applied.
 *
 * Safe when several instances start at once on one database: the run holds a
 * lock, so one instance applies the migrations while the others wait and then
 * find nothing pending.
 */
export async function migrateUp(
  database: Database,
  options: { lockWaitMs?: number; migrations?: readonly MigrationEntry[] } = {},
): Promise<string[]> {
  const applied = await withMigrationLock(
    database,
    (migrating) => createMigrator(migrating, options.migrations).up(),
    options.lockWaitMs ?? MIGRATION_LOCK_WAIT_MS,
  );
  return applied.map((m) => m.name);
}

/**
 * Runs `fn` while holding the database's migration lock. `fn` gets the
 * database to migrate through: on PostgreSQL a connection of its own without
 * the per-statement timeout (DB_STATEMENT_TIMEOUT bounds requests; DDL on a
 * large table may rightly take longer), on SQLite `database` itself.
 */
export function withMigrationLock<T>(database: Database, fn: (migrating: Database) => Promise<T>, waitMs = MIGRATION_LOCK_WAIT_MS): Promise<T> {
  if (database.dialect !== 'postgres') return withSqliteLock(database, () => fn(database), waitMs);
  return withPostgresLock(database, async () => {
    const migrating = await openDatabase(database.url, { poolMax: 1, statementTimeoutMs: 0 });
    try {
      return await fn(migrating);
    } finally {
      await migrating.close();
    }
  }, waitMs);
}

/**
 * PostgreSQL: a session-level advisory lock on a connection of its own, outside
 * the pool (so even DB_POOL_MAX=1 leaves the migrations a connection). If this
 * process dies the connection closes and the server releases the lock.
 */
async function withPostgresLock<T>(database: Database, fn: () => Promise<T>, waitMs: number): Promise<T> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({
    connectionString: database.url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'token-bridge migrations',
  });
  // A connection lost while waiting or migrating surfaces as a rejected query; this only keeps
  // the client's 'error' event from becoming an uncaught exception.
  client.on('error', () => undefined);
  await client.connect();
  try {
    // lock_timeout bounds the wait for another instance's run (55P03 lock_not_available).
    await client.query(`SET lock_timeout = ${Math.max(1, Math.floor(waitMs))}`);
    try {
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [PG_LOCK_NAME]);
    } catch (err) {
      if ((err as { code?: unknown }).code === '55P03') {
        throw new Error(`another instance has held the migration lock for over ${Math.round(waitMs / 1000)} s`, { cause: err });
      }
      throw err;
    }
    try {
      return await fn();
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [PG_LOCK_NAME]).catch(() => undefined);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * SQLite: the whole run is one `BEGIN IMMEDIATE` transaction on the connection
 * Sequelize uses for every query outside a transaction, which is where umzug and
 * its storage run. IMMEDIATE takes the file's write lock at once, so a second
 * process waits (busy timeout, retried until `waitMs`) and then sees the
 * migrations recorded. SQLite DDL is transactional: a failed run leaves nothing
 * half-applied. Nothing else may use the database while this runs (true at start-up).
 */
async function withSqliteLock<T>(database: Database, fn: () => Promise<T>, waitMs: number): Promise<T> {
  const { sequelize } = database;
  const { storage } = (sequelize as unknown as { options: { storage?: string } }).options;
  if (storage === ':memory:') return fn(); // private to this process: nobody to race
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await sequelize.query('BEGIN IMMEDIATE', { retry: { max: 1 } });
      break;
    } catch (err) {
      if (!isDatabaseUnavailable(err) || Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    await sequelize.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  await sequelize.query('COMMIT');
  return result;
}
