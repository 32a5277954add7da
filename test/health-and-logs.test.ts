import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import { Writable } from 'node:stream';
import request from 'supertest';
import { createApp } from '../app.js';
import { migrateUp } from '../migrations/runner.js';
import { createLogger } from '../middleware/request-log.js';
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
    const config = testConfig();
    database = await openDatabase(config.databaseUrl);
    await migrateUp(database);
    captured = captureLines();
    const app = createApp({ config, database, logger: createLogger('info', captured.stream) });
    server = createServer(app);
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
    const config = testConfig();
    const database = await openDatabase(config.databaseUrl);
    await migrateUp(database);
    captured = captureLines();
    server = createServer(createApp({ config, database, logger: createLogger('warn', captured.stream) }));
    token = new TokenService(config.jwt).mint({ id: 7, username: 'nobody', roles: [], disabled: false, createdAt: new Date(0), tokensValidAfter: null }, 'sid-x').token;
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
    await request(server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(503);
    await new Promise((r) => setImmediate(r));
    const lines = captured.lines().slice(from);
    expect(lines).to.have.length(1);
    expect(lines[0]).to.deep.include({ level: 50, res: { status: 503 } });
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
