import cluster, { type Worker } from 'node:cluster';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { createApp } from './app.js';
import { systemClock } from './clock.js';
import { ConfigError, ensureEnvFile, envFilePath, loadConfig, readEnvironment, type Config } from './config.js';
import { migrateUp } from './migrations/runner.js';
import { createLogger } from './middleware/request-log.js';
import { clusterChangeFeed, relayClusterChanges } from './models/change-feed.js';
import { openDatabase, type Database } from './models/database.js';
import { startMaintenance } from './services/maintenance.js';
import { answerClusterPrimary, clusterMetricsSource, Metrics, metricsPort, startMetricsServer, type MetricsSource } from './services/metrics.js';
import { SigningKeys } from './services/signing-keys.js';

/** Headers may hold a large (rejected with 401) bearer token; Node's default 16 KiB would answer 431. */
const MAX_HEADER_BYTES = 96 * 1024;
/** How long SIGTERM waits for in-flight requests before closing anyway. */
const SHUTDOWN_GRACE_MS = 10_000;
/** A worker that dies is replaced after this pause; more than CRASH_LIMIT deaths in CRASH_WINDOW_MS stop the cluster. */
const RESPAWN_DELAY_MS = 500;
const CRASH_LIMIT = 5;
const CRASH_WINDOW_MS = 60_000;

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config: Config;
  try {
    // Workers read the .env their primary created (or found).
    if (cluster.isPrimary && ensureEnvFile()) process.stderr.write(`created ${envFilePath} with fresh random secrets\n`);
    config = loadConfig(readEnvironment());
  } catch (err) {
    if (err instanceof ConfigError) fail(`config error: ${err.message}`);
    throw err;
  }
  const logger = createLogger(config.logLevel);

  if (cluster.isWorker) return serve(config, logger.child({ worker: cluster.worker!.id, pid: process.pid }), false);
  if (config.webConcurrency > 1) return runPrimary(config, logger);
  return serve(config, logger, true);
}

/**
 * Opens the database and, in the primary or a single process, applies pending
 * migrations. `poolMax` defaults to `DB_POOL_MAX`.
 */
async function openMigrated(config: Config, logger: Logger, migrate: boolean, poolMax = config.databasePoolMax): Promise<Database> {
  let database: Database | undefined;
  try {
    database = await openDatabase(config.databaseUrl, {
      poolMax,
      acquireTimeoutMs: config.databaseAcquireTimeoutMs,
      statementTimeoutMs: config.databaseStatementTimeoutMs,
      // SQLite workers hear each other's revocations through the primary; PostgreSQL uses LISTEN/NOTIFY.
      ...(cluster.isWorker && !config.databaseUrl.startsWith('postgres') ? { changes: clusterChangeFeed() } : {}),
    });
    if (migrate) {
      const applied = await migrateUp(database);
      if (applied.length > 0) logger.info({ migrations: applied }, 'migrations applied');
    }
    return database;
  } catch (err) {
    await database?.close().catch(() => undefined);
    fail(`database error: ${(err as Error).message}`);
  }
}

/**
 * `WEB_CONCURRENCY` > 1: this process migrates, runs the maintenance passes
 * (the workers do not, so each pass runs once per instance), forks the
 * workers (which share the listening port through node:cluster), replaces a
 * worker that dies, and on SIGTERM/SIGINT stops them all gracefully and exits 0.
 */
async function runPrimary(config: Config, logger: Logger): Promise<void> {
  // The workers count; the primary answers scrapes with their sum.
  if (config.metrics) await serveMetrics(config.metrics, clusterMetricsSource(), logger);
  // One pooled connection is all the maintenance passes use (their statements run one at a time);
  // the pool lets it go when idle, so between passes the primary holds none.
  const database = await openMigrated(config, logger, true, 1);
  const maintenance = startMaintenance({ database, config, logger });

  let stopping = false;
  let exitCode = 0;
  const crashes: number[] = [];
  // Our own list: cluster.workers may still hold a worker whose 'exit' came before its 'disconnect'.
  const live = new Set<Worker>();
  const fork = () => live.add(cluster.fork());
  if (!config.databaseUrl.startsWith('postgres')) relayClusterChanges(() => live);

  // Once every worker is gone: wait for a running maintenance pass, close the database, exit.
  let finishing = false;
  const finish = async () => {
    if (finishing) return;
    finishing = true;
    await maintenance.stop();
    await database.close().catch((err: Error) => logger.error({ err }, 'closing the database failed'));
    logger.info('stopped');
    process.exit(exitCode);
  };

  cluster.on('exit', (worker: Worker, code: number | null, signal: string | null) => {
    live.delete(worker);
    if (stopping) {
      if (live.size === 0) void finish();
      return;
    }
    logger.error({ worker: worker.id, pid: worker.process.pid, code, signal }, 'worker exited unexpectedly');
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length > CRASH_LIMIT) {
      logger.fatal({ crashes: crashes.length }, 'workers keep dying: stopping');
      stop('crash loop', 1);
      return;
    }
    setTimeout(() => {
      if (!stopping) fork();
    }, RESPAWN_DELAY_MS).unref();
  });

  const stop = (reason: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    logger.info({ signal: reason }, 'shutting down');
    // No new pass from here on; one in flight stops after its current statement.
    void maintenance.stop();
    if (live.size === 0) {
      void finish();
      return;
    }
    // Each worker finishes its in-flight requests and closes its database (see serve()).
    for (const worker of live) worker.process.kill('SIGTERM');
    setTimeout(() => {
      logger.warn('grace period over: killing remaining workers');
      for (const worker of live) worker.process.kill('SIGKILL');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS + 5_000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  logger.info({ workers: config.webConcurrency, pid: process.pid }, 'starting workers');
  for (let i = 0; i < config.webConcurrency; i += 1) fork();
}

/**
 * ES256/RS256: the key set, created on first start. A key this JWT_SECRET_KEY
 * cannot decrypt stops the start with one line, never a 500 later.
 */
async function openSigningKeys(config: Config, database: Database, logger: Logger): Promise<SigningKeys | undefined> {
  if (config.jwt.algorithm === 'HS256') return undefined;
  try {
    return await SigningKeys.open({ database, settings: config.jwt, clock: systemClock, logger });
  } catch (err) {
    await database.close().catch(() => undefined);
    fail(`signing keys error: ${(err as Error).message}`);
  }
}

/**
 * `METRICS_PORT`: `GET /metrics` on a listener of its own (never the app's
 * port). One that cannot listen stops the start with one line.
 */
async function serveMetrics(where: NonNullable<Config['metrics']>, source: MetricsSource, logger: Logger): Promise<void> {
  try {
    const server = await startMetricsServer(where, source, (err) => logger.warn({ err }, 'metrics scrape failed'));
    const host = where.host.includes(':') ? `[${where.host}]` : where.host;
    logger.info({ metricsPort: metricsPort(server) }, `metrics at http://${host}:${metricsPort(server)}/metrics`);
  } catch (err) {
    fail(`metrics server error: ${(err as Error).message}`);
  }
}

/** One HTTP server: the whole app in a single process, or one cluster worker. */
async function serve(config: Config, logger: Logger, migrate: boolean): Promise<void> {
  // A worker's metrics go to the primary, which serves them summed; a single process serves its own.
  const metrics = config.metrics ? new Metrics() : undefined;
  if (metrics && cluster.isWorker) answerClusterPrimary(metrics);
  else if (metrics && config.metrics) await serveMetrics(config.metrics, metrics, logger);
  const database = await openMigrated(config, logger, migrate);
  // A single process runs the maintenance passes itself; cluster workers leave them to the primary.
  const maintenance = migrate ? startMaintenance({ database, config, logger }) : undefined;

  const signingKeys = await openSigningKeys(config, database, logger);
  const app = createApp({ config, database, logger, ...(signingKeys ? { signingKeys } : {}), ...(metrics ? { metrics } : {}) });
  const server: Server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, app);
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  server.listen(config.port, () => {
    const { port } = server.address() as AddressInfo;
    logger.info({ port, env: config.env, database: database.dialect }, `listening on http://localhost:${port}`);
  });
  server.on('error', (err) => fail(`server error: ${err.message}`));

  // Responses still open when shutdown starts, so they can end their keep-alive connection.
  const open = new Set<ServerResponse>();
  let stopping = false;
  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    if (stopping) res.setHeader('Connection', 'close');
    open.add(res);
    res.on('close', () => open.delete(res));
  });

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // No new pass from here on; one in flight stops after its current statement.
    const maintenanceStopped = maintenance?.stop();
    signingKeys?.stop();
    // Without this a keep-alive client would hold close() open for keepAliveTimeout after its last response.
    for (const res of open) if (!res.headersSent) res.setHeader('Connection', 'close');
    const force = setTimeout(() => {
      logger.warn('grace period over: closing remaining connections');
      server.closeAllConnections();
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    // close() stops accepting and waits for in-flight requests; idle keep-alive sockets are closed now.
    server.close(async () => {
      clearTimeout(force);
      await maintenanceStopped;
      await database.close().catch((err: Error) => logger.error({ err }, 'closing the database failed'));
      logger.info('stopped');
      process.exit(0);
    });
    server.closeIdleConnections();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => fail(`start failed: ${(err as Error).message}`));
