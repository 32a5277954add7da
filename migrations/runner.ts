import { setTimeout as sleep } from 'node:timers/promises';
import type { QueryInterface } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';
import { CONNECT_TIMEOUT_MS, isDatabaseUnavailable, type Database } from '../models/database.js';
import { migrations } from './index.js';

export type Migrator = Umzug<QueryInterface>;

/** How long an instance waits for another one's migration run before giving up. */
export const MIGRATION_LOCK_WAIT_MS = 120_000;
/** Name of the PostgreSQL advisory lock (hashed to its key) that serialises migration runs. */
const PG_LOCK_NAME = 'token-bridge:migrations';

/** An umzug migrator over the app's migrations, recording applied ones in `migrations_meta`. */
export function createMigrator(database: Database, logger: Console | undefined = undefined): Migrator {
  return new Umzug({
    migrations: migrations.map(({ name, up, down }) => ({ name, up, down })),
    context: database.sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize: database.sequelize, tableName: 'migrations_meta' }),
    logger,
  });
}

/**
 * Applies every pending migration; returns the names applied.
 *
 * Safe when several instances start at once on one database: the run holds a
 * lock, so one instance applies the migrations while the others wait and then
 * find nothing pending.
 */
export async function migrateUp(database: Database, options: { lockWaitMs?: number } = {}): Promise<string[]> {
  const applied = await withMigrationLock(database, () => createMigrator(database).up(), options.lockWaitMs ?? MIGRATION_LOCK_WAIT_MS);
  return applied.map((m) => m.name);
}

/** Runs `fn` while holding the database's migration lock. */
export function withMigrationLock<T>(database: Database, fn: () => Promise<T>, waitMs = MIGRATION_LOCK_WAIT_MS): Promise<T> {
  return database.dialect === 'postgres' ? withPostgresLock(database, fn, waitMs) : withSqliteLock(database, fn, waitMs);
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
