import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import express from 'express';
import { pino, type Logger } from 'pino';
import { ConnectionRefusedError, UniqueConstraintError } from 'sequelize';
import request from 'supertest';
import { createApp } from '../app.js';
import { migrateUp } from '../migrations/runner.js';
import { errorHandler, notFound } from '../middleware/errors.js';
import { errorForLog, WITHHELD_DATABASE_MESSAGE } from '../middleware/log-error.js';
import { createLogger, requestLogger } from '../middleware/request-log.js';
import { openDatabase, type Database } from '../models/database.js';
import { TokenService } from '../services/tokens.js';
import { startTestApp, testConfig, type TestApp } from './helpers/app.js';

/** A writable stream that keeps what a pino logger writes, one JSON object per line. */
function captureLines() {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return {
    stream,
    text: () => text,
    lines: () => text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** The real app on a fresh in-memory database, logging at `level` into a capture. */
async function loggedApp(level: 'info' | 'warn') {
  const config = testConfig();
  const database = await openDatabase(config.databaseUrl);
  await migrateUp(database);
  const captured = captureLines();
  const server = createServer(createApp({ config, database, logger: createLogger(level, captured.stream) }));
  return { config, database, captured, server };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ALLOWED_ERROR_KEYS = ['type', 'message', 'code', 'stack'];

/** Waits for the 'close' listeners of finished responses (where the request line is written). */
const settle = () => new Promise((r) => setImmediate(r));

describe('health probes', () => {
  describe('with the database up', () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp();
    });
    after(() => t.close());

    it('/healthz answers 200 JSON, not cached, without a session cookie', async () => {
      const res = await request(t.server).get('/healthz').expect(200).expect('Content-Type', /application\/json/);
      expect(res.body).to.deep.equal({ status: 'ok' });
      expect(res.headers['cache-control']).to.contain('no-store');
      expect(res.headers['set-cookie']).to.equal(undefined);
    });

    it('/readyz answers 200 JSON when the database is reachable', async () => {
      const res = await request(t.server).get('/readyz').expect(200).expect('Content-Type', /application\/json/);
      expect(res.body).to.include({ status: 'ready' });
      expect(res.headers['set-cookie']).to.equal(undefined);
    });
  });

  describe('with the database closed', () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp();
      await t.database.close();
    });

    it('/readyz answers 503 JSON (not 500, no stack) once the database is gone', async () => {
      const res = await request(t.server).get('/readyz').expect(503).expect('Content-Type', /application\/json/);
      expect(res.body).to.have.property('error').that.is.a('string');
      expect(res.body).to.have.property('message').that.is.a('string');
      expect(res.text).not.to.match(/\bat .+\(.+:\d+:\d+\)/);
      expect(res.headers['cache-control']).to.contain('no-store');
    });

    it('/healthz still answers 200: the process is up even when the database is not', async () => {
      await request(t.server).get('/healthz').expect(200);
    });
  });
});

describe('request logs', () => {
  let database: Database;
  let server: Server;
  let captured: ReturnType<typeof captureLines>;

  before(async () => {
    ({ database, captured, server } = await loggedApp('info'));
  });
  after(() => database.close());

  /** The lines logged for one request made by `send`. */
  async function logsOf(send: () => Promise<unknown>) {
    const from = captured.lines().length;
    await send();
    return captured.lines().slice(from).filter((l) => l.req !== undefined);
  }

  it('logs exactly one line per request with method, path, status and milliseconds', async () => {
    const lines = await logsOf(() => request(server).get('/healthz').expect(200));
    expect(lines).to.have.length(1);
    expect(lines[0]!.req).to.deep.include({ method: 'GET', path: '/healthz' });
    expect(lines[0]!.res).to.deep.equal({ status: 200 });
    expect(lines[0]!.responseTime).to.be.a('number');
  });

  it('drops request headers: no cookie or authorization value reaches the log', async () => {
    const cookie = 'tb.sid=s%3Acookie-value-that-must-not-be-logged.sig';
    const bearer = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.bearer-value-that-must-not-be-logged';
    const lines = await logsOf(() =>
      request(server).get('/api/me').set('Cookie', cookie).set('Authorization', `Bearer ${bearer}`).expect(401),
    );
    expect(lines).to.have.length(1);
    const req = lines[0]!.req as Record<string, unknown>;
    expect(Object.keys(req)).to.have.members(['id', 'method', 'path']);
    expect(req).not.to.have.property('headers');
    expect(captured.text()).not.to.contain('cookie-value-that-must-not-be-logged');
    expect(captured.text()).not.to.contain('bearer-value-that-must-not-be-logged');
    expect(captured.text().toLowerCase()).not.to.contain('authorization');
  });

  it('drops response headers: a Set-Cookie value never reaches the log', async () => {
    let setCookie: string[] = [];
    const lines = await logsOf(async () => {
      const res = await request(server).get('/auth/login').expect(200);
      setCookie = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
    });
    expect(setCookie, 'the login page should set a session cookie').to.have.length.above(0);
    expect(lines[0]!.res).to.deep.equal({ status: 200 });
    for (const c of setCookie) {
      const value = c.split(';')[0]!.split('=').slice(1).join('=');
      expect(captured.text()).not.to.contain(value);
    }
    expect(captured.text().toLowerCase()).not.to.contain('set-cookie');
  });

  it('logs the path without its query string', async () => {
    const lines = await logsOf(() => request(server).get('/healthz?token=query-secret-value&password=query-pass').expect(200));
    expect(lines[0]!.req).to.deep.include({ path: '/healthz' });
    expect(captured.text()).not.to.contain('query-secret-value');
    expect(captured.text()).not.to.contain('query-pass');
  });

  it('redacts password and token fields that any code logs by mistake', () => {
    const capture = captureLines();
    const logger = createLogger('info', capture.stream);
    logger.info({ password: 'pw-must-not-appear', token: 'tok-must-not-appear', user: { password: 'nested-pw', token: 'nested-tok' } }, 'oops');
    const text = capture.text();
    for (const secret of ['pw-must-not-appear', 'tok-must-not-appear', 'nested-pw', 'nested-tok']) {
      expect(text).not.to.contain(secret);
    }
    expect(capture.lines()[0]).to.deep.include({ password: '[redacted]', token: '[redacted]' });
  });
});

describe('request logs at LOG_LEVEL=warn', () => {
  let server: Server;
  let captured: ReturnType<typeof captureLines>;
  let token: string;

  before(async () => {
    const logged = await loggedApp('warn');
    ({ captured, server } = logged);
    const { config, database } = logged;
    token = new TokenService(config.jwt, Date.now).mint({ id: 7, username: 'nobody', roles: [], disabled: false, createdAt: new Date(0), tokensValidAfter: null }, 'sid-x').token;
    await database.close();
  });

  it('writes nothing for a successful request', async () => {
    const from = captured.lines().length;
    await request(server).get('/healthz').expect(200);
    await new Promise((r) => setImmediate(r));
    expect(captured.lines().slice(from)).to.deep.equal([]);
  });

  it('still writes one error line, with the error and its stack, for a request that failed on our side', async () => {
    const from = captured.lines().length;
    const res = await request(server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(503);
    await new Promise((r) => setImmediate(r));
    const lines = captured.lines().slice(from);
    expect(lines).to.have.length(1);
    expect(lines[0]).to.deep.include({ level: 50, res: { status: 503 } });
    expect((lines[0]!.req as { id: string }).id).to.equal(res.headers['x-request-id']).and.match(UUID);
    expect(Object.keys(lines[0]!.err as object)).to.satisfy((keys: string[]) => keys.every((k) => ALLOWED_ERROR_KEYS.includes(k)));
    const err = lines[0]!.err as { message?: string; stack?: string };
    expect(err.message).to.match(/closed/);
    expect(err.stack).to.be.a('string').and.match(/\n\s+at /);
  });

  it('writes an error line for a 5xx answered without an exception (/readyz, database down)', async () => {
    const from = captured.lines().length;
    await request(server).get('/readyz').expect(503);
    await new Promise((r) => setImmediate(r));
    const lines = captured.lines().slice(from);
    expect(lines.map((l) => l.msg)).to.deep.equal(['GET 503 failed']);
  });
});

describe('request ids', () => {
  let database: Database;
  let server: Server;
  let captured: ReturnType<typeof captureLines>;

  before(async () => {
    ({ database, captured, server } = await loggedApp('info'));
  });
  after(() => database.close());

  it('answers every request with its own X-Request-Id: API, pages, form errors, 404s, probes and static files', async () => {
    const responses = [
      await request(server).get('/healthz').expect(200),
      await request(server).get('/api/me').expect(401),
      await request(server).get('/api/no-such-route').expect(401),
      await request(server).get('/auth/token').expect(401),
      await request(server).get('/auth/login').expect(200),
      await request(server).get('/no-such-page').set('Accept', 'text/html').expect(404),
      await request(server).post('/auth/login').type('form').send({ username: 'x', password: 'y' }).expect(403),
      await request(server).get('/static/style.css').expect(200),
      await request(server).get('/healthz').expect(200),
    ];
    const ids = responses.map((r) => r.headers['x-request-id'] as string | undefined);
    for (const id of ids) expect(id).to.match(UUID);
    expect(new Set(ids).size, 'unique per request').to.equal(ids.length);
  });

  it('puts the id it answered with on the request log line', async () => {
    const from = captured.lines().length;
    const res = await request(server).get('/api/me').expect(401);
    await settle();
    const lines = captured.lines().slice(from).filter((l) => l.req !== undefined);
    expect(lines).to.have.length(1);
    expect((lines[0]!.req as { id: string }).id).to.equal(res.headers['x-request-id']);
  });

  it('ignores an incoming X-Request-Id: the id is always its own, and the sent value never reaches the log', async () => {
    const forged = 'forged-id","level":60,"msg":"forged line';
    const from = captured.lines().length;
    const res = await request(server).get('/healthz').set('X-Request-Id', forged).expect(200);
    await settle();
    expect(res.headers['x-request-id']).to.match(UUID);
    const lines = captured.lines().slice(from);
    expect(lines).to.have.length(1);
    expect((lines[0]!.req as { id: string }).id).to.equal(res.headers['x-request-id']);
    expect(captured.text()).not.to.contain('forged');
  });
});

describe('error lines: an allow-list, never the error object', () => {
  // Looks like a session id; it is the value that breaks the constraint, a bind parameter and,
  // in the bad query, an inline replacement and the column the server's message names.
  const SECRET = 'sess_9f2c41d7e0b84a6c';
  let database: Database;
  let viewsDir: string;

  before(async () => {
    database = await openDatabase('sqlite::memory:');
    await migrateUp(database);
    await createUser(SECRET);
    viewsDir = mkdtempSync(path.join(tmpdir(), 'tb-views-'));
    // An error view that fails while rendering with an error carrying SQL-ish properties.
    writeFileSync(path.join(viewsDir, 'error.ejs'), "<% throw Object.assign(new Error('the view broke'), { sql: secretSql, parameters: [secretSql] }) %>");
  });
  after(async () => {
    if (viewsDir) rmSync(viewsDir, { recursive: true, force: true });
    await database?.close();
  });

  function createUser(name: string) {
    return database.users.create({ username: name, usernameKey: name, passwordHash: 'not-a-hash', roles: [] } as never);
  }

  /** A real UniqueConstraintError from SQLite: `fields`, `errors[].value`, `sql` and `parent` hold the value. */
  async function uniqueViolation(): Promise<unknown> {
    const err = await createUser(SECRET).then(() => expect.fail('the insert should have failed'), (e: unknown) => e);
    expect(err).to.be.instanceOf(UniqueConstraintError);
    return err;
  }

  /** A real DatabaseError whose own message quotes the value ("no such column: sess_…"). */
  function badQuery(): Promise<unknown> {
    return database.sequelize
      .query(`SELECT ${SECRET} FROM users WHERE username_key = ?`, { replacements: [SECRET] })
      .then(() => expect.fail('the query should have failed'), (e: unknown) => e);
  }

  /** The app's request logger and error handler around routes that fail with real database errors. */
  function appLoggingTo(logger: Logger) {
    const app = express();
    app.set('view engine', 'ejs');
    app.set('views', viewsDir);
    app.locals.secretSql = `SELECT * FROM sessions WHERE sid = '${SECRET}'`;
    app.use(requestLogger(logger));
    app.get('/unique', async () => {
      throw await uniqueViolation();
    });
    app.get('/query', async () => {
      throw await badQuery();
    });
    app.get('/after-send', async (_req, res) => {
      res.send('sent');
      throw await uniqueViolation();
    });
    app.use(notFound);
    app.use(errorHandler);
    return createServer(app);
  }

  function expectAllowListed(line: Record<string, unknown>) {
    const err = line.err as Record<string, unknown>;
    expect(err, 'the line has an err').to.be.an('object');
    expect(Object.keys(err)).to.satisfy((keys: string[]) => keys.every((k) => ALLOWED_ERROR_KEYS.includes(k)), `keys ${Object.keys(err).join(', ')}`);
    expect(JSON.stringify(line)).not.to.contain(SECRET);
    return err;
  }

  async function failedLine(logger: Logger, capture: ReturnType<typeof captureLines>, url: string, status: number) {
    const server = appLoggingTo(logger);
    const res = await request(server).get(url).set('Accept', 'application/json').expect(status);
    // A failure after the response was sent is logged when the handler gets there, not before the client reads.
    for (let i = 0; i < 100 && !capture.lines().some((l) => l.err !== undefined); i += 1) await new Promise((r) => setTimeout(r, 10));
    await settle();
    const errorLines = capture.lines().filter((l) => l.err !== undefined);
    expect(errorLines).to.have.length(1);
    expect(capture.text()).not.to.contain(SECRET);
    return { line: errorLines[0]!, requestId: res.headers['x-request-id'] as string };
  }

  // A plain pino logger (its own err serializer copies every property): the call sites must do it.
  for (const [what, makeLogger] of [
    ['a plain pino logger', (c: ReturnType<typeof captureLines>) => pino({ level: 'info' }, c.stream)],
    ["the app's logger", (c: ReturnType<typeof captureLines>) => createLogger('info', c.stream)],
  ] as const) {
    describe(`with ${what}`, () => {
      it('logs a unique violation with the value in it as type, message, code and stack only', async () => {
        const capture = captureLines();
        const { line, requestId } = await failedLine(makeLogger(capture), capture, '/unique', 500);
        const err = expectAllowListed(line);
        expect(err).to.deep.include({ type: 'SequelizeUniqueConstraintError', message: 'Validation error on username_key', code: 'SQLITE_CONSTRAINT' });
        expect(err.stack).to.be.a('string').and.match(/^SequelizeUniqueConstraintError: Validation error on username_key\n\s+at /);
        expect((line.req as { id: string }).id).to.equal(requestId);
      });

      it("withholds a database error's own message, which quotes the value", async () => {
        // The control: the raw error really carries the value in its message and SQL.
        const raw = (await badQuery()) as Error & { sql?: string };
        expect(raw.message).to.contain(SECRET);
        expect(raw.sql).to.contain(SECRET);
        const capture = captureLines();
        const { line } = await failedLine(makeLogger(capture), capture, '/query', 500);
        const err = expectAllowListed(line);
        expect(err).to.deep.include({ type: 'SequelizeDatabaseError', message: WITHHELD_DATABASE_MESSAGE, code: 'SQLITE_ERROR' });
        expect(err.stack).to.match(/\n\s+at /);
      });

      it('logs a failure after the response was sent the same way, with the request id', async () => {
        const capture = captureLines();
        const { line, requestId } = await failedLine(makeLogger(capture), capture, '/after-send', 200);
        expect(line.msg).to.equal('failed after the response was sent');
        expect(expectAllowListed(line)).to.include({ type: 'SequelizeUniqueConstraintError', code: 'SQLITE_CONSTRAINT' });
        expect(line.req).to.deep.equal({ id: requestId });
      });

      it('logs an error page that failed to render with the allow-listed keys and the request id', async () => {
        const capture = captureLines();
        const server = appLoggingTo(makeLogger(capture));
        const res = await request(server).get('/no-such-page').set('Accept', 'text/html').expect(404);
        await settle();
        expect(res.text).to.equal('Page not found: Nothing lives at this address.');
        const lines = capture.lines().filter((l) => l.msg === 'error page failed to render');
        expect(lines).to.have.length(1);
        expect(expectAllowListed(lines[0]!).message).to.contain('the view broke');
        expect(lines[0]!.req).to.deep.equal({ id: res.headers['x-request-id'] });
        expect(capture.text()).not.to.contain(SECRET);
      });
    });
  }

  it("the app's logger reduces an error any module logs as err to the allow-list", async () => {
    const capture = captureLines();
    createLogger('info', capture.stream).error({ err: await uniqueViolation() }, 'something failed');
    const [line] = capture.lines();
    expect(expectAllowListed(line!)).to.include({ type: 'SequelizeUniqueConstraintError', code: 'SQLITE_CONSTRAINT' });
    createLogger('info', capture.stream).error(await badQuery(), 'logged as the first argument');
    expect(expectAllowListed(capture.lines()[1]!)).to.include({ message: WITHHELD_DATABASE_MESSAGE });
  });

  it('keeps the message of errors that are not the database\'s, and of connection errors', () => {
    const plain = errorForLog(Object.assign(new TypeError('x is not a function'), { code: 'ERR_X', detail: 'dropped' }));
    expect({ ...plain }).to.have.all.keys('type', 'message', 'code', 'stack');
    expect(plain).to.include({ type: 'TypeError', message: 'x is not a function', code: 'ERR_X' });
    expect(errorForLog('thrown text')).to.include({ type: 'string', message: 'thrown text' });
    const driver = errorForLog(Object.assign(new Error(`SQLITE_ERROR: no such column: ${SECRET}`), { code: 'SQLITE_ERROR', errno: 1 }));
    expect(driver).to.include({ message: WITHHELD_DATABASE_MESSAGE, code: 'SQLITE_ERROR' });
    expect(JSON.stringify(driver)).not.to.contain(SECRET);
    const pg = errorForLog(Object.assign(new Error(`invalid input syntax for type integer: "${SECRET}"`), { code: '22P02', severity: 'ERROR' }));
    expect(JSON.stringify(pg)).not.to.contain(SECRET);
    const refused = errorForLog(new ConnectionRefusedError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })));
    expect(refused).to.include({ type: 'SequelizeConnectionRefusedError', message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' });
  });
});
