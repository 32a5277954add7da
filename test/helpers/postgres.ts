import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * `TEST_DATABASE_URL` (a `postgres://` URL) runs the suite on PostgreSQL: every
 * test app gets a database of its own, created next to the one the URL names.
 * Unset: the suite runs on SQLite.
 */
export const testDatabaseUrl: string | undefined = process.env.TEST_DATABASE_URL || undefined;

if (testDatabaseUrl && !/^postgres(ql)?:\/\//.test(testDatabaseUrl)) {
  throw new Error('TEST_DATABASE_URL must be a postgres:// URL');
}

export interface TestDatabase {
  /** The database's name (a safe identifier: lower-case letters, digits, underscores). */
  name: string;
  url: string;
  /** Drops the database, ending any connection still open to it. Safe to call twice. */
  drop(): Promise<void>;
}

const created = new Set<string>();

/** Runs statements on the database `TEST_DATABASE_URL` names (never one of the per-test databases). */
export async function adminQuery(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  if (!testDatabaseUrl) throw new Error('TEST_DATABASE_URL is not set');
  const client = new pg.Client({ connectionString: testDatabaseUrl, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The per-run prefix: the base database's name, so CI can drop what a killed run left behind. */
function prefix(): string {
  const base = new URL(testDatabaseUrl!).pathname.slice(1) || 'postgres';
  return `${base.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 40)}_t_`;
}

/** A new, empty PostgreSQL database for one test app or one group of server processes. */
export async function createTestDatabase(): Promise<TestDatabase> {
  if (!testDatabaseUrl) throw new Error('TEST_DATABASE_URL is not set');
  const name = `${prefix()}${randomBytes(6).toString('hex')}`;
  // template0: nobody is ever connected to it, so concurrent CREATE DATABASEs never conflict.
  await adminQuery(`CREATE DATABASE "${name}" TEMPLATE template0`);
  created.add(name);
  const url = new URL(testDatabaseUrl);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    name,
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      await dropDatabase(name);
    },
  };
}

async function dropDatabase(name: string): Promise<void> {
  await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  created.delete(name);
}

/** Drops every database this process created and has not dropped yet (a test that never closed its app). */
export async function dropLeftoverDatabases(): Promise<void> {
  for (const name of [...created]) await dropDatabase(name).catch(() => undefined);
}

/** Cuts a database off: ends every connection to it and refuses new ones until {@link restoreConnections}. */
export async function blockConnections(name: string): Promise<void> {
  await adminQuery(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`);
  await adminQuery('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
}

export async function restoreConnections(name: string): Promise<void> {
  await adminQuery(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`);
}

// Registered on mocha's root suite when the first test file imports this module.
if (testDatabaseUrl && typeof after === 'function') {
  after(dropLeftoverDatabases);
}
