import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { QueryTypes } from 'sequelize';
import { ConfigError, loadConfig } from '../config.js';
import { openDatabase } from '../models/database.js';
import { STRONG_PASSWORD, uniqueName } from './helpers/browser.js';
import { randomSecret, startServer, tempDir, type ServerProcess } from './helpers/process.js';
import { callApi, concurrentSignIns, RemoteBrowser } from './helpers/remote-browser.js';

function timing(label: string, ms: number): void {
  process.stdout.write(`      [timing] ${label}: ${ms} ms\n`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('scale-out settings (WEB_CONCURRENCY, DB_POOL_MAX, DB_ACQUIRE_TIMEOUT)', () => {
  const secrets = { JWT_SECRET_KEY: randomSecret(), SESSION_SECRET: randomSecret() };
  const refusal = (env: Record<string, string>): string => {
    try {
      loadConfig({ ...secrets, ...env });
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      return (err as ConfigError).variable;
    }
    return 'accepted';
  };

  it('defaults to one process, 10 pooled connections and a 5 s acquire timeout', () => {
    expect(loadConfig(secrets)).to.include({ webConcurrency: 1, databasePoolMax: 10, databaseAcquireTimeoutMs: 5_000 });
    expect(loadConfig({ ...secrets, WEB_CONCURRENCY: '4', DB_POOL_MAX: '25', DB_ACQUIRE_TIMEOUT: '2s' })).to.include({
      webConcurrency: 4,
      databasePoolMax: 25,
      databaseAcquireTimeoutMs: 2_000,
    });
  });

  it('refuses bad values, naming the variable', () => {
    for (const value of ['0', '-1', 'two', '65', '1.5']) expect(refusal({ WEB_CONCURRENCY: value }), value).to.equal('WEB_CONCURRENCY');
    for (const value of ['0', 'ten', '1001']) expect(refusal({ DB_POOL_MAX: value }), value).to.equal('DB_POOL_MAX');
    expect(refusal({ DB_ACQUIRE_TIMEOUT: '10ms' })).to.equal('DB_ACQUIRE_TIMEOUT');
  });

  it('refuses several workers on sqlite::memory: (each would have its own empty database)', () => {
    expect(refusal({ WEB_CONCURRENCY: '2', DATABASE_URL: 'sqlite::memory:' })).to.equal('WEB_CONCURRENCY');
    expect(refusal({ WEB_CONCURRENCY: '2', DATABASE_URL: 'sqlite:data/x.sqlite' })).to.equal('accepted');
  });
});

/** WEB_CONCURRENCY=2: node:cluster workers sharing one port and one SQLite file in WAL mode. */
describe('WEB_CONCURRENCY=2 on one SQLite file', function () {
  this.timeout(90_000);
  this.slow(10_000);

  let tmp: ReturnType<typeof tempDir>;
  let server: ServerProcess;
  let dbFile: string;

  before(async () => {
    tmp = tempDir();
    dbFile = path.join(tmp.dir, 'app.sqlite');
    writeFileSync(path.join(tmp.dir, '.env'), '');
    server = await startServer({
      ENV_FILE: path.join(tmp.dir, '.env'),
      DATABASE_URL: `sqlite:${dbFile}`,
      JWT_SECRET_KEY: randomSecret(),
      SESSION_SECRET: randomSecret(),
      WEB_CONCURRENCY: '2',
      REGISTER_IP_MAX: '1000',
    });
  });
  after(async () => {
    await server?.stop();
    tmp?.cleanup();
  });

  it('the primary migrates once, then forks two workers that listen on the same port', async () => {
    const lines = server.logLines();
    expect(lines.filter((l) => l.msg === 'migrations applied')).to.have.length(1);
    expect(lines.find((l) => l.msg === 'starting workers')).to.include({ workers: 2 });
    // The second worker may still be starting.
    const deadline = Date.now() + 20_000;
    while (server.logLines().filter((l) => String(l.msg).startsWith('listening')).length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const listening = server.logLines().filter((l) => String(l.msg).startsWith('listening'));
    expect(listening.map((l) => l.port)).to.deep.equal([server.port, server.port]);
    expect(new Set(listening.map((l) => l.pid)).size).to.equal(2);
  });

  it('serves 40 concurrent registrations, all 302, spread over both workers, each user able to use the API', async () => {
    const browsers = Array.from({ length: 40 }, () => ({ browser: new RemoteBrowser(), username: uniqueName('worker') }));
    const csrfs = await Promise.all(browsers.map(({ browser }) => browser.csrf(`${server.baseUrl}/auth/register`)));
    const start = Date.now();
    const results = await Promise.all(
      browsers.map(({ browser, username }, i) =>
        browser.postForm(`${server.baseUrl}/auth/register`, { _csrf: csrfs[i]!, username, password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD }),
      ),
    );
    timing('40 concurrent registrations on 2 workers (SQLite WAL)', Date.now() - start);
    expect(results.map((r) => r.status)).to.deep.equal(Array(40).fill(302));

    const served = server
      .logLines()
      .filter((l) => (l.req as { method?: string; path?: string } | undefined)?.path === '/auth/register' && (l.req as { method?: string }).method === 'POST');
    expect(new Set(served.map((l) => l.pid)).size, 'both workers served registrations').to.equal(2);

    // Every session written by either worker works on the port (whichever worker answers).
    const tokens = await Promise.all(browsers.slice(0, 10).map(({ browser }) => browser.token(server.baseUrl)));
    for (const token of tokens) expect((await callApi(server.baseUrl, token)).status).to.equal(200);

    const database = await openDatabase(`sqlite:${dbFile}`);
    try {
      const names = browsers.map((b) => b.username.toLowerCase());
      const rows = await database.sequelize.query<{ n: number }>('SELECT COUNT(*) AS n FROM users WHERE username_key IN (:names)', {
        replacements: { names },
        type: QueryTypes.SELECT,
      });
      expect(Number(rows[0]!.n)).to.equal(40);
      const [mode] = await database.sequelize.query<{ journal_mode: string }>('PRAGMA journal_mode', { type: QueryTypes.SELECT });
      expect(mode!.journal_mode).to.equal('wal');
    } finally {
      await database.close();
    }
  });

  it('signs in all of 40 concurrent correct sign-ins to one account (both workers)', async () => {
    const username = uniqueName('burst');
    expect((await new RemoteBrowser().register(server.baseUrl, username)).status).to.equal(302);
    const { statuses, failedChecks } = await concurrentSignIns([server.baseUrl], `sqlite:${dbFile}`, username, STRONG_PASSWORD);
    expect(statuses).to.deep.equal(Array(40).fill(302));
    expect(failedChecks).to.equal(0);
  });

  it('checks exactly 5 passwords when 40 wrong guesses arrive at once (both workers), and answers the rest 429', async () => {
    const username = uniqueName('burst');
    expect((await new RemoteBrowser().register(server.baseUrl, username)).status).to.equal(302);
    const { statuses, failedChecks } = await concurrentSignIns([server.baseUrl], `sqlite:${dbFile}`, username, `wrong ${STRONG_PASSWORD}`);
    expect(statuses.filter((s) => s === 401).length, statuses.join(',')).to.equal(5);
    expect(statuses.filter((s) => s === 429).length, statuses.join(',')).to.equal(35);
    expect(failedChecks, 'password checks that failed (audit rows)').to.equal(5);
  });

  it('SIGTERM to the primary stops both workers gracefully and exits 0', async () => {
    const pids = [...new Set(server.logLines().flatMap((l) => (typeof l.pid === 'number' && l.worker !== undefined ? [l.pid] : [])))];
    expect(pids).to.have.length(2);
    server.child.kill('SIGTERM');
    const exit = await server.exited;
    expect(exit).to.deep.equal({ code: 0, signal: null });
    const messages = server.logLines().map((l) => `${l.worker ?? 'primary'}:${String(l.msg)}`);
    expect(messages.filter((m) => m.endsWith(':stopped'))).to.have.length(3);
    expect(messages.at(-1)).to.equal('primary:stopped');
    for (const pid of pids) expect(alive(pid), `worker ${pid} still running`).to.equal(false);
    expect(server.stderr()).to.equal('');
  });
});
