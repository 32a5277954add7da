import { expect } from 'chai';
import { createServer as createHttpServer, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import pg from 'pg';
import { pino } from 'pino';
import request from 'supertest';
import { createApp } from '../app.js';
import { ConfigError } from '../config.js';
import { migrateUp } from '../migrations/runner.js';
import { describeError } from '../middleware/errors.js';
import { isDatabaseUnavailable, openDatabase, type Database } from '../models/database.js';
import { testConfig } from './helpers/app.js';
import { userWithToken } from './helpers/browser.js';
import { createTestDatabase, testDatabaseUrl, type TestDatabase } from './helpers/postgres.js';

interface TimeoutApp {
  server: Server;
  database: Database;
  close(): Promise<void>;
}

/** The real app on `url` (migrated) with a 1 s DB_STATEMENT_TIMEOUT and no revocation cache. */
async function startApp(url: string, env: Record<string, string> = {}): Promise<TimeoutApp> {
  const config = testConfig({ DATABASE_URL: url, DB_STATEMENT_TIMEOUT: '1s', REVOCATION_CACHE_TTL: '0', ...env });
  const database = await openDatabase(config.databaseUrl, {
    poolMax: config.databasePoolMax,
    acquireTimeoutMs: config.databaseAcquireTimeoutMs,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
  });
  await migrateUp(database);
  const app = createApp({ config, database, logger: pino({ level: 'silent' }) });
  return { server: createHttpServer(app), database, close: () => database.close() };
}

/**
 * A TCP relay in front of PostgreSQL that can go silent: while partitioned it
 * keeps every connection open but drops every byte both ways (no reset, no
 * reply), as a dead route or a firewall dropping packets would.
 */
async function startPartitionableProxy(target: { host: string; port: number }) {
  let partitioned = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const [from, to] of [[client, upstream], [upstream, client]] as const) {
      sockets.add(from);
      from.on('data', (chunk) => {
        if (!partitioned) to.write(chunk);
      });
      from.on('error', () => undefined);
      from.on('close', () => {
        sockets.delete(from);
        to.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    partition: () => (partitioned = true),
    heal: () => (partitioned = false),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function pollUntil(probe: () => Promise<boolean>, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`not true within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('DB_STATEMENT_TIMEOUT', () => {
  it('defaults to 10 s and takes a duration of at least a second, refusing anything else by name', () => {
    expect(testConfig().databaseStatementTimeoutMs).to.equal(10_000);
    expect(testConfig({ DB_STATEMENT_TIMEOUT: '30s' }).databaseStatementTimeoutMs).to.equal(30_000);
    for (const value of ['never', '500ms', '0']) {
      expect(() => testConfig({ DB_STATEMENT_TIMEOUT: value }), value).to.throw(ConfigError).with.property('variable', 'DB_STATEMENT_TIMEOUT');
    }
  });
});

describe('PostgreSQL statement and query timeouts (DB_STATEMENT_TIMEOUT)', function () {
  this.timeout(60_000);
  this.slow(10_000);

  let db: TestDatabase;
  before(async function () {
    if (!testDatabaseUrl) return this.skip(); // needs PostgreSQL: run with TEST_DATABASE_URL
    db = await createTestDatabase();
  });
  after(() => db?.drop());

  describe('a statement that runs too long', () => {
    let t: TimeoutApp;
    before(async () => {
      t = await startApp(db.url);
    });
    after(() => t?.close());

    it('is cancelled by the server after DB_STATEMENT_TIMEOUT with 57014, which counts as unavailable (503)', async () => {
      const err = await t.database.sequelize.query('SELECT pg_sleep(5)').then(() => null, (e: unknown) => e);
      expect(err, 'pg_sleep(5) finished under a 1 s statement timeout').to.be.instanceOf(Error);
      expect((err as { parent?: { code?: string } }).parent?.code).to.equal('57014');
      expect(isDatabaseUnavailable(err)).to.equal(true);
      expect(describeError(err)).to.include({ status: 503 });
      // The server's cancel leaves the connection usable.
      await request(t.server).get('/readyz').expect(200);
    });

    it('answers 503 with Retry-After to a request blocked behind another connection\'s lock, then 200 once it is released', async () => {
      const { token } = await userWithToken(t.server);
      await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
      const holder = new pg.Client({ connectionString: db.url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
        const res = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`);
        expect(res.status, res.text).to.equal(503);
        expect(res.body).to.include({ error: 'service_unavailable' });
        expect(res.headers['retry-after']).to.equal('5');
      } finally {
        await holder.query('ROLLBACK').catch(() => undefined);
        await holder.end();
      }
      await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
    });
  });

  describe('a server that stops answering (silent network partition)', () => {
    let proxy: Awaited<ReturnType<typeof startPartitionableProxy>>;
    let t: TimeoutApp;
    before(async () => {
      const direct = new URL(db.url);
      proxy = await startPartitionableProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
      const relayed = new URL(db.url);
      relayed.hostname = '127.0.0.1';
      relayed.port = String(proxy.port);
      // One pooled connection, so each query below uses the connection the partition cut.
      t = await startApp(relayed.toString(), { DB_POOL_MAX: '1' });
    });
    after(async () => {
      proxy?.heal();
      await t?.close();
      await proxy?.close();
    });

    it('gives a query up after the statement timeout plus the margin ("Query read timeout"), which counts as unavailable (503)', async () => {
      await t.database.sequelize.query('SELECT 1');
      proxy.partition();
      const err = await t.database.sequelize.query('SELECT 1').then(() => null, (e: unknown) => e);
      proxy.heal();
      expect(err, 'a query answered through a partition').to.be.instanceOf(Error);
      expect((err as Error).message).to.match(/Query read timeout/);
      expect(isDatabaseUnavailable(err)).to.equal(true);
      expect(describeError(err)).to.include({ status: 503 });
      // The cut connection was dropped from the pool: the next query gets a fresh one.
      await t.database.sequelize.query('SELECT 1');
    });

    it('answers 503 with Retry-After instead of hanging, and serves again once the network is back', async () => {
      const { token } = await userWithToken(t.server);
      await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
      proxy.partition();
      try {
        const res = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`);
        expect(res.status, res.text).to.equal(503);
        expect(res.body).to.include({ error: 'service_unavailable' });
        expect(res.headers['retry-after']).to.equal('5');
      } finally {
        proxy.heal();
      }
      await pollUntil(async () => (await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`)).status === 200, 15_000);
    });
  });
});
