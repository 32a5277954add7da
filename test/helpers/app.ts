import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dotenv from 'dotenv';
import type { Express } from 'express';
import { pino } from 'pino';
import { createApp, type AppDeps } from '../../app.js';
import type { Clock } from '../../clock.js';
import { loadConfig, type Config } from '../../config.js';
import { migrateUp } from '../../migrations/runner.js';
import { openDatabase, type Database } from '../../models/database.js';
import { projectRoot } from '../../paths.js';
import type { Metrics } from '../../services/metrics.js';
import { SigningKeys } from '../../services/signing-keys.js';
import { responseContract } from './contract.js';
import { createTestDatabase, testDatabaseUrl } from './postgres.js';

/** The settings in `.env.test`, overridable per test. The process environment is not read. */
export function testConfig(overrides: Record<string, string> = {}): Config {
  const base = dotenv.parse(readFileSync(path.join(projectRoot, '.env.test')));
  return loadConfig({ ...base, ...overrides });
}

export interface TestApp {
  app: Express;
  /** An HTTP server (not listening) with the same header limit as server.ts, for supertest. */
  server: Server;
  database: Database;
  config: Config;
  /** The loaded key set with JWT_ALGORITHM ES256/RS256 (stopped by `close()`); undefined with HS256. */
  signingKeys: SigningKeys | undefined;
  close(): Promise<void>;
}

/**
 * A real app on a freshly migrated database: SQLite in memory by default, a
 * file when `databaseUrl` says so. With `TEST_DATABASE_URL` set (and no
 * `databaseUrl`), a new PostgreSQL database of its own, dropped by `close()`.
 * Every JSON answer of a route the OpenAPI description covers is checked
 * against it (`responseContract`, unless `checkResponses` replaces it): one
 * that does not match answers 500.
 */
export async function startTestApp(options: { env?: Record<string, string>; databaseUrl?: string; clock?: Clock; metrics?: Metrics; checkResponses?: AppDeps['checkResponses'] } = {}): Promise<TestApp> {
  const pg = !options.databaseUrl && !options.env?.DATABASE_URL && testDatabaseUrl ? await createTestDatabase() : undefined;
  const databaseUrl = options.databaseUrl ?? pg?.url;
  const config = testConfig({ ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}), ...options.env });
  let database: Database;
  try {
    database = await openDatabase(config.databaseUrl, { poolMax: config.databasePoolMax, acquireTimeoutMs: config.databaseAcquireTimeoutMs });
    await migrateUp(database).catch(async (err: unknown) => {
      await database.close();
      throw err;
    });
  } catch (err) {
    await pg?.drop();
    throw err;
  }
  let signingKeys: SigningKeys | undefined;
  if (config.jwt.algorithm !== 'HS256') {
    try {
      signingKeys = await SigningKeys.open({ database, settings: config.jwt, clock: options.clock ?? Date.now });
    } catch (err) {
      await database.close();
      await pg?.drop();
      throw err;
    }
  }
  const app = createApp({
    config,
    database,
    logger: pino({ level: 'silent' }),
    checkResponses: options.checkResponses ?? responseContract,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(signingKeys ? { signingKeys } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
  });
  const server = createServer({ maxHeaderSize: 96 * 1024 }, app);
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      signingKeys?.stop();
      try {
        await database.close();
      } finally {
        await pg?.drop();
      }
    })());
  return { app, server, database, config, signingKeys, close };
}

/** A temporary folder holding a SQLite file; removed by `cleanup`. */
export function tempSqliteUrl(): { url: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tb-test-'));
  return { url: `sqlite:${path.join(dir, 'app.sqlite')}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * An empty database for server processes or tools: a new PostgreSQL database
 * when `TEST_DATABASE_URL` is set, else a SQLite file in a temp folder.
 */
export async function freshDatabase(): Promise<{ url: string; dialect: 'postgres' | 'sqlite'; name?: string; cleanup(): Promise<void> }> {
  if (testDatabaseUrl) {
    const pg = await createTestDatabase();
    return { url: pg.url, dialect: 'postgres', name: pg.name, cleanup: () => pg.drop() };
  }
  const file = tempSqliteUrl();
  return { url: file.url, dialect: 'sqlite', cleanup: async () => file.cleanup() };
}
