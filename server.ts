import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from './app.js';
import { ConfigError, ensureEnvFile, envFilePath, loadConfig, readEnvironment, type Config } from './config.js';
import { migrateUp } from './migrations/runner.js';
import { createLogger } from './middleware/request-log.js';
import { openDatabase } from './models/database.js';

/** Headers may hold a large (rejected with 401) bearer token; Node's default 16 KiB would answer 431. */
const MAX_HEADER_BYTES = 96 * 1024;
/** How long SIGTERM waits for in-flight requests before closing anyway. */
const SHUTDOWN_GRACE_MS = 10_000;

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config: Config;
  try {
    if (ensureEnvFile()) process.stderr.write(`created ${envFilePath} with fresh random secrets\n`);
    config = loadConfig(readEnvironment());
  } catch (err) {
    if (err instanceof ConfigError) fail(`config error: ${err.message}`);
    throw err;
  }
  const logger = createLogger(config.logLevel);

  let database;
  try {
    database = await openDatabase(config.databaseUrl);
    const applied = await migrateUp(database);
    if (applied.length > 0) logger.info({ migrations: applied }, 'migrations applied');
  } catch (err) {
    fail(`database error: ${(err as Error).message}`);
  }

  const app = createApp({ config, database, logger });
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
