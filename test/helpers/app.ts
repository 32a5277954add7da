import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dotenv from 'dotenv';
import type { Express } from 'express';
import { pino } from 'pino';
import { createApp } from '../../app.js';
import { loadConfig, type Config } from '../../config.js';
import { migrateUp } from '../../migrations/runner.js';
import { openDatabase, type Database } from '../../models/database.js';
import { projectRoot } from '../../paths.js';

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
  close(): Promise<void>;
}

/**
 * A real app on a freshly migrated database: SQLite in memory by default, a
 * file when `databaseUrl` says so.
 */
export async function startTestApp(options: { env?: Record<string, string>; databaseUrl?: string } = {}): Promise<TestApp> {
  const config = testConfig({ ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}), ...options.env });
  const database = await openDatabase(config.databaseUrl);
  await migrateUp(database);
  const app = createApp({ config, database, logger: pino({ level: 'silent' }) });
  const server = createServer({ maxHeaderSize: 96 * 1024 }, app);
  return { app, server, database, config, close: () => database.close() };
}

/** A temporary folder holding a SQLite file; removed by `cleanup`. */
export function tempSqliteUrl(): { url: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tb-test-'));
  return { url: `sqlite:${path.join(dir, 'app.sqlite')}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
