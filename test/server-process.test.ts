import { expect } from 'chai';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import dotenv from 'dotenv';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { migrations } from '../migrations/index.js';
import { createMigrator } from '../migrations/runner.js';
import { openDatabase } from '../models/database.js';
import { csrfFrom, loginUser, STRONG_PASSWORD, uniqueName } from './helpers/browser.js';
import { randomSecret, runUntilExit, startServer, tempDir, type ServerProcess } from './helpers/process.js';

/** The Set-Cookie values of a response, each as the bare value (no name, no attributes). */
function cookieValues(res: { headers: Record<string, unknown> }): string[] {
  const cookies = (res.headers['set-cookie'] as string[] | undefined) ?? [];
  return cookies.map((c) => c.split(';')[0]!.split('=').slice(1).join('='));
}

/** Waits until the server has written at least `count` request log lines after `from`. */
async function requestLines(server: ServerProcess, from: number, count: number): Promise<Array<Record<string, unknown>>> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const lines = server.logLines().filter((l) => l.req !== undefined).slice(from);
    if (lines.length >= count || Date.now() > deadline) return lines;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The number of request log lines once stdout has been quiet for a moment (earlier lines may still be in the pipe). */
async function requestLineCount(server: ServerProcess): Promise<number> {
  let last = '';
  while (server.stdout() !== last) {
    last = server.stdout();
    await new Promise((r) => setTimeout(r, 150));
  }
  return server.logLines().filter((l) => l.req !== undefined).length;
}

/** Starts a server in its own temp folder, with an empty .env there unless `withoutEnvFile`. */
function launch(tmp: ReturnType<typeof tempDir>, env: Record<string, string> = {}, withoutEnvFile = false): Promise<ServerProcess> {
  if (!withoutEnvFile) writeFileSync(path.join(tmp.dir, '.env'), '');
  return startServer({
    ENV_FILE: path.join(tmp.dir, '.env'),
    DATABASE_URL: `sqlite:${path.join(tmp.dir, 'app.sqlite')}`,
    ...(withoutEnvFile ? {} : { JWT_SECRET_KEY: randomSecret(), SESSION_SECRET: randomSecret() }),
    ...env,
  });
}

/** Marks a promise as handled now (it is awaited by a later hook) so an early rejection is not fatal. */
function later<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

describe('the server process', function () {
  // Start-up is mostly module loading: generous limits for a busy two-core machine.
  this.timeout(90_000);
  this.slow(6_000);

  // Every process starts at once: each spends most of its start-up loading modules.
  let tmps: Record<'running' | 'sigterm' | 'badKey' | 'badDb' | 'first', ReturnType<typeof tempDir>>;
  let running: Promise<ServerProcess>;
  let sigterm: Promise<ServerProcess>;
  let first: Promise<ServerProcess>;
  let badKey: ReturnType<typeof runUntilExit>;
  let badDb: ReturnType<typeof runUntilExit>;
  let firstEnvFile: string;
  let firstDbFile: string;

  before(() => {
    tmps = { running: tempDir(), sigterm: tempDir(), badKey: tempDir(), badDb: tempDir(), first: tempDir() };
    firstEnvFile = path.join(tmps.first.dir, '.env');
    firstDbFile = path.join(tmps.first.dir, 'nested', 'data', 'app.sqlite');
    running = later(launch(tmps.running));
    sigterm = later(launch(tmps.sigterm));
    // No JWT_SECRET_KEY or SESSION_SECRET: they must come from the .env the server creates.
    first = later(launch(tmps.first, { DATABASE_URL: `sqlite:${firstDbFile}` }, true));
    writeFileSync(path.join(tmps.badKey.dir, '.env'), '');
    badKey = later(runUntilExit({
      ENV_FILE: path.join(tmps.badKey.dir, '.env'),
      DATABASE_URL: `sqlite:${path.join(tmps.badKey.dir, 'app.sqlite')}`,
      JWT_SECRET_KEY: 'short',
      SESSION_SECRET: randomSecret(),
    }));
    writeFileSync(path.join(tmps.badDb.dir, '.env'), '');
    writeFileSync(path.join(tmps.badDb.dir, 'not-a-folder'), '');
    badDb = later(runUntilExit({
      ENV_FILE: path.join(tmps.badDb.dir, '.env'),
      DATABASE_URL: `sqlite:${path.join(tmps.badDb.dir, 'not-a-folder', 'app.sqlite')}`,
      JWT_SECRET_KEY: randomSecret(),
      SESSION_SECRET: randomSecret(),
    }));
  });
  after(async () => {
    await Promise.all([running, sigterm, first].map((p) => p?.then((s) => s.stop(), () => undefined)));
    await Promise.all([badKey, badDb].map((p) => p?.catch(() => undefined)));
    for (const tmp of Object.values(tmps ?? {})) tmp.cleanup();
  });

  describe('running', () => {
    let server: ServerProcess;
    before(async () => {
      server = await running;
    });

    it('logs the port it chose for PORT=0 in a JSON "listening" line', () => {
      const listening = server.logLines().find((l) => String(l.msg).includes('listening'));
      expect(listening).to.include({ port: server.port });
      expect(server.port).to.be.above(0);
    });

    it('serves /healthz and /readyz', async () => {
      const health = await request(server.baseUrl).get('/healthz').expect(200).expect('Content-Type', /json/);
      expect(health.body).to.deep.equal({ status: 'ok' });
      const ready = await request(server.baseUrl).get('/readyz').expect(200).expect('Content-Type', /json/);
      expect(ready.body).to.include({ status: 'ready' });
    });

    it('logs one JSON line per request with method, path, status and time, and never a password, token or cookie', async () => {
      const before = await requestLineCount(server);
      const seen: string[] = [];
      const secrets: string[] = [STRONG_PASSWORD];
      const note = (method: string, url: string, res: { status: number; headers: Record<string, unknown> }) => {
        seen.push(`${method} ${url} ${res.status}`);
        for (const value of cookieValues(res)) secrets.push(value, decodeURIComponent(value));
      };

      const username = uniqueName('logs');
      const agent = request.agent(server.baseUrl);
      const page = await agent.get('/auth/register').expect(200);
      note('GET', '/auth/register', page);
      const _csrf = csrfFrom(page.text);
      secrets.push(_csrf);
      const reg = await agent
        .post('/auth/register')
        .type('form')
        .send({ _csrf, username, password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD })
        .expect(302);
      note('POST', '/auth/register', reg);

      const wrongPassword = 'Wrong-Password-Never-Logged-9';
      secrets.push(wrongPassword);
      const failing = request.agent(server.baseUrl);
      const failPage = await failing.get('/auth/login').expect(200);
      note('GET', '/auth/login', failPage);
      const failed = await failing.post('/auth/login').type('form').send({ _csrf: csrfFrom(failPage.text), username, password: wrongPassword });
      expect(failed.status).to.be.within(400, 499);
      note('POST', '/auth/login', failed);

      const other = request.agent(server.baseUrl);
      const login = await loginUser(other, username);
      expect(login.status).to.equal(302);
      // loginUser fetched the form first.
      seen.push('GET /auth/login 200');
      note('POST', '/auth/login', login);

      const tokenRes = await other.get('/auth/token').expect(200);
      note('GET', '/auth/token', tokenRes);
      const token = (tokenRes.body as { token: string }).token;
      secrets.push(token, token.split('.')[2]!);
      const me = await request(server.baseUrl).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
      note('GET', '/api/me', me);

      const lines = await requestLines(server, before, seen.length);
      expect(lines.map((l) => {
        const req = l.req as { method: string; path: string };
        const res = l.res as { status: number };
        return `${req.method} ${req.path} ${res.status}`;
      })).to.deep.equal(seen);
      for (const line of lines) {
        expect(line.responseTime).to.be.a('number').and.at.least(0);
        expect(Object.keys(line.req as object)).to.have.members(['id', 'method', 'path']);
        expect(Object.keys(line.res as object)).to.have.members(['status']);
      }

      const out = server.stdout();
      for (const secret of secrets.filter((s) => s.length >= 8)) {
        expect(out, 'a secret value was logged').not.to.contain(secret);
      }
    });

    it('does not log the query string', async () => {
      const before = await requestLineCount(server);
      const marker = `qs-secret-${randomSecret()}`;
      await request(server.baseUrl).get(`/healthz?access_token=${marker}&password=${marker}`).expect(200);
      const [line] = await requestLines(server, before, 1);
      expect(line?.req).to.include({ method: 'GET', path: '/healthz' });
      expect(server.stdout()).not.to.contain(marker);
      expect(server.stdout()).not.to.contain('access_token');
    });
  });

  describe('SIGTERM', () => {
    let server: ServerProcess;
    before(async () => {
      server = await sigterm;
    });

    it('stops accepting, finishes the in-flight request with success, closes and exits 0', async () => {
      const keepAlive = new http.Agent({ keepAlive: true });
      const agent = request.agent(server.baseUrl);
      const page = await agent.get('/auth/register').expect(200);
      const cookie = (page.headers['set-cookie'] as unknown as string[]).map((c) => c.split(';')[0]).join('; ');
      const body = new URLSearchParams({
        _csrf: csrfFrom(page.text),
        username: uniqueName('term'),
        password: STRONG_PASSWORD,
        confirmPassword: STRONG_PASSWORD,
      }).toString();

      // Headers and half the body go out before the signal: the request is in flight for certain.
      let afterSignal: Promise<Error | null> = Promise.resolve(null);
      const response = new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
        const req = http.request(`${server.baseUrl}/auth/register`, {
          method: 'POST',
          agent: keepAlive,
          headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body), Cookie: cookie },
        });
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location }));
        });
        req.on('error', reject);
        req.write(body.slice(0, 20));
        setTimeout(() => {
          server.child.kill('SIGTERM');
          setTimeout(() => {
            // A new connection is refused once shutting down; then the in-flight body completes.
            afterSignal = fetch(`${server.baseUrl}/healthz`).then(() => null, (err: Error) => err);
            void afterSignal.then(() => req.end(body.slice(20)));
          }, 300);
        }, 200);
      });

      const result = await response;
      const answered = Date.now();
      expect(result.status).to.equal(302);
      expect(result.location).to.equal('/');
      expect(await afterSignal, 'a new request was served after SIGTERM').to.be.instanceOf(Error);

      const exit = await server.exited;
      keepAlive.destroy();
      expect(exit).to.deep.equal({ code: 0, signal: null });
      // A keep-alive client must not hold the shutdown open for the server's 5 s keep-alive timeout.
      expect(Date.now() - answered).to.be.below(3_000);
      const messages = server.logLines().map((l) => l.msg);
      expect(messages).to.include('shutting down');
      expect(messages.at(-1)).to.equal('stopped');
      expect(server.stderr()).to.equal('');
    });
  });

  describe('a bad configuration', () => {
    it('exits non-zero with one stderr line naming JWT_SECRET_KEY and no stack trace', async () => {
      const result = await badKey;
      expect(result.code).to.be.a('number').and.not.equal(0);
      const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines, result.stderr).to.have.length(1);
      expect(lines[0]).to.contain('JWT_SECRET_KEY');
      expect(result.stderr).not.to.match(/^\s+at /m);
      expect(result.stdout).not.to.contain('listening');
      expect(existsSync(path.join(tmps.badKey.dir, 'app.sqlite')), 'database opened despite bad config').to.equal(false);
    });

    it('exits non-zero with one stderr line when the database cannot be opened', async () => {
      const result = await badDb;
      expect(result.code).to.be.a('number').and.not.equal(0);
      const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines, result.stderr).to.have.length(1);
      expect(lines[0]).to.match(/database/i);
      expect(result.stderr).not.to.match(/^\s+at /m);
    });
  });

  describe('first start without .env', () => {
    let server: ServerProcess;
    let envFile: string;
    let dbFile: string;
    before(async () => {
      server = await first;
      [envFile, dbFile] = [firstEnvFile, firstDbFile];
    });

    it('creates the .env file (ENV_FILE) with fresh private secrets and signs tokens with them', async () => {
      expect(existsSync(envFile)).to.equal(true);
      expect(statSync(envFile).mode & 0o777).to.equal(0o600);
      const created = dotenv.parse(readFileSync(envFile));
      expect(Buffer.byteLength(created.JWT_SECRET_KEY ?? '')).to.be.at.least(32);
      expect(Buffer.byteLength(created.SESSION_SECRET ?? '')).to.be.at.least(32);
      expect(created.JWT_SECRET_KEY).not.to.equal(created.SESSION_SECRET);
      expect(server.stderr()).to.contain(envFile);

      const agent = request.agent(server.baseUrl);
      const page = await agent.get('/auth/register').expect(200);
      await agent
        .post('/auth/register')
        .type('form')
        .send({ _csrf: csrfFrom(page.text), username: uniqueName('first'), password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD })
        .expect(302);
      const token = ((await agent.get('/auth/token').expect(200)).body as { token: string }).token;
      expect(() => jwt.verify(token, created.JWT_SECRET_KEY!, { algorithms: ['HS256'] })).not.to.throw();
    });

    it('creates the database file and applies every migration on start', async () => {
      expect(existsSync(dbFile)).to.equal(true);
      const applied = server.logLines().find((l) => l.msg === 'migrations applied');
      const all = migrations.map((m) => m.name);
      expect(applied?.migrations).to.deep.equal(all);
      const database = await openDatabase(`sqlite:${dbFile}`);
      try {
        const migrator = createMigrator(database);
        expect((await migrator.executed()).map((m) => m.name)).to.deep.equal(all);
        expect(await migrator.pending()).to.deep.equal([]);
      } finally {
        await database.close();
      }
    });
  });
});
