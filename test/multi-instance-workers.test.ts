import { expect } from 'chai';
import { request as httpRequest } from 'node:http';
import jwt from 'jsonwebtoken';
import { QueryTypes } from 'sequelize';
import { loadConfig } from '../config.js';
import { openDatabase } from '../models/database.js';
import { freshDatabase, tempSqliteUrl } from './helpers/app.js';
import { STRONG_PASSWORD, uniqueName } from './helpers/browser.js';
import { configRefusal } from './helpers/config.js';
import { runKeysCli } from './helpers/cli.js';
import { randomSecret, type ServerProcess } from './helpers/process.js';
import { callApi, concurrentSignIns, RemoteBrowser, startInstances, waitUntil, type Instances } from './helpers/remote-browser.js';

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
  const refusal = (env: Record<string, string>): string => configRefusal({ ...secrets, ...env })?.variable ?? 'accepted';

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

  let db: ReturnType<typeof tempSqliteUrl>;
  let app: Instances;
  let server: ServerProcess;

  before(async () => {
    db = tempSqliteUrl();
    app = await startInstances(1, { DATABASE_URL: db.url, WEB_CONCURRENCY: '2', REGISTER_IP_MAX: '1000' });
    server = app.servers[0]!;
  });
  after(async () => {
    await app?.stopAll();
    db?.cleanup();
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

    const database = await openDatabase(db.url);
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
    const { statuses, failedChecks } = await concurrentSignIns([server.baseUrl], db.url, username, STRONG_PASSWORD);
    expect(statuses).to.deep.equal(Array(40).fill(302));
    expect(failedChecks).to.equal(0);
  });

  it('checks exactly 5 passwords when 40 wrong guesses arrive at once (both workers), and answers the rest 429', async () => {
    const username = uniqueName('burst');
    expect((await new RemoteBrowser().register(server.baseUrl, username)).status).to.equal(302);
    const { statuses, failedChecks } = await concurrentSignIns([server.baseUrl], db.url, username, `wrong ${STRONG_PASSWORD}`);
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

/** The worker pids of a cluster, once both have logged "listening" (the second may still be starting). */
async function workerPids(server: ServerProcess, count: number): Promise<number[]> {
  const listening = () => server.logLines().filter((l) => String(l.msg).startsWith('listening') && typeof l.pid === 'number');
  await waitUntil(async () => listening().length >= count, 30_000);
  return listening().map((l) => l.pid as number);
}

interface Served {
  status: number;
  body: string;
  /** The worker that answered, from the request log line carrying the response's X-Request-Id. */
  pid: number;
}

/**
 * One GET on a connection of its own (no keep-alive): node:cluster hands each
 * new connection to the next worker in turn, so a series of these reaches
 * every worker.
 */
async function onNewConnection(server: ServerProcess, urlPath: string, headers: Record<string, string>): Promise<Served> {
  const reply = await new Promise<{ status: number; body: string; id: string }>((resolve, reject) => {
    const req = httpRequest(`${server.baseUrl}${urlPath}`, { agent: false, headers: { ...headers, Connection: 'close' }, timeout: 20_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body, id: String(res.headers['x-request-id']) }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
    req.end();
  });
  const line = () => server.logLines().find((l) => (l.req as { id?: string } | undefined)?.id === reply.id);
  // The request line is written when the response closes, a moment after the client has read it.
  await waitUntil(async () => line() !== undefined, 5_000, 20);
  return { status: reply.status, body: reply.body, pid: line()!.pid as number };
}

/** Repeats `send` (each on a new connection) until every worker of `pids` has answered at least once; every answer, in order. */
async function untilEachWorker(pids: readonly number[], send: () => Promise<Served>): Promise<Served[]> {
  const answers: Served[] = [];
  while (!pids.every((pid) => answers.some((a) => a.pid === pid))) {
    if (answers.length >= 20) throw new Error(`20 requests did not reach every worker: ${answers.map((a) => a.pid).join(',')}`);
    answers.push(await send());
  }
  return answers;
}

const kidOf = (token: string) => jwt.decode(token, { complete: true })!.header.kid as string;

/** WEB_CONCURRENCY=2 with ES256: two workers (each opens the key set at start) on one database, SQLite file or PostgreSQL. */
describe('WEB_CONCURRENCY=2 with JWT_ALGORITHM=ES256 (one key set for both workers)', function () {
  this.timeout(90_000);
  this.slow(15_000);
  const JWT_SECRET_KEY = randomSecret();
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let app: Instances;
  let server: ServerProcess;
  let pids: number[];
  let cookie: string;
  /** One token minted by each worker before the rotation, by pid. */
  const minted = new Map<number, string>();
  const mint = () => onNewConnection(server, '/auth/token', { Cookie: cookie });
  const tokenOf = (answer: Served) => (JSON.parse(answer.body) as { token: string }).token;
  before(async () => {
    db = await freshDatabase();
    app = await startInstances(1, { DATABASE_URL: db.url, JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY, WEB_CONCURRENCY: '2' });
    server = app.servers[0]!;
    pids = await workerPids(server, 2);
    const browser = new RemoteBrowser();
    expect((await browser.register(server.baseUrl, uniqueName('es256'))).status).to.equal(302);
    cookie = browser.cookieHeader();
  });
  after(async () => {
    await app?.stopAll();
    await db?.cleanup();
  });

  it('the workers, starting together, create exactly one key and both publish it', async () => {
    expect(new Set(pids).size).to.equal(2);
    const database = await openDatabase(db.url);
    try {
      const rows = await database.signingKeys.findAll();
      expect(rows.map((r) => [r.alg, r.state])).to.deep.equal([['ES256', 'current']]);
      const jwks = await untilEachWorker(pids, () => onNewConnection(server, '/.well-known/jwks.json', {}));
      for (const answer of jwks) expect((JSON.parse(answer.body) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)).to.deep.equal([rows[0]!.kid]);
    } finally {
      await database.close();
    }
    expect(server.logLines().filter((l) => l.msg === 'worker exited unexpectedly'), 'no worker died at start').to.deep.equal([]);
    expect(server.stderr()).to.equal('');
  });

  it('a token minted by one worker is accepted by the other, both ways', async () => {
    for (const answer of await untilEachWorker(pids, mint)) {
      expect(answer.status, answer.body).to.equal(200);
      minted.set(answer.pid, tokenOf(answer));
    }
    for (const [mintedBy, token] of minted) {
      const uses = await untilEachWorker(pids, () => onNewConnection(server, '/api/me', { Authorization: `Bearer ${token}` }));
      expect(uses.some((u) => u.pid !== mintedBy), 'used on the other worker').to.equal(true);
      for (const use of uses) expect(use.status, `minted by ${mintedBy}, used on ${use.pid}: ${use.body}`).to.equal(200);
    }
  });

  it('after npm run keys -- rotate both workers sign with the new kid within 5 s, and the old tokens still work on both', async () => {
    expect(minted.size, 'tokens from the test before').to.equal(2);
    const [oldKid] = new Set([...minted.values()].map(kidOf));
    const rotated = await runKeysCli(['rotate'], { databaseUrl: db.url, env: { JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY } });
    expect(rotated.code, rotated.stderr).to.equal(0);
    const current = new RegExp(`^current (\\S+); previous ${oldKid} `).exec(rotated.stdout)?.[1];
    expect(current, rotated.stdout).to.be.a('string').and.not.equal(oldKid);
    // Both workers (each answer on a new connection) mint with the new kid.
    await waitUntil(async () => (await untilEachWorker(pids, mint)).every((a) => a.status === 200 && kidOf(tokenOf(a)) === current), 5_000);
    for (const answer of await untilEachWorker(pids, mint)) expect(kidOf(tokenOf(answer)), `minted by ${answer.pid}`).to.equal(current);
    for (const token of minted.values()) {
      for (const use of await untilEachWorker(pids, () => onNewConnection(server, '/api/me', { Authorization: `Bearer ${token}` }))) {
        expect(use.status, `old token on ${use.pid}: ${use.body}`).to.equal(200);
      }
    }
  });
});

/** SQLite has no LISTEN/NOTIFY: the workers of one process group pass revocations through their primary (node:cluster IPC). */
describe('WEB_CONCURRENCY=2 on SQLite: a revocation reaches the other worker through the primary', function () {
  this.timeout(90_000);
  this.slow(10_000);
  let db: ReturnType<typeof tempSqliteUrl>;
  let app: Instances;
  let server: ServerProcess;
  let pids: number[];
  before(async () => {
    db = tempSqliteUrl();
    app = await startInstances(1, {
      DATABASE_URL: db.url,
      WEB_CONCURRENCY: '2',
      // Long enough that only the relayed change, never the cache expiring, explains a refusal within 1 s.
      REVOCATION_CACHE_TTL: '5000',
    });
    server = app.servers[0]!;
    pids = await workerPids(server, 2);
  });
  after(async () => {
    await app?.stopAll();
    db?.cleanup();
  });

  it('refuses on both workers within 1 s a token whose session signed out on one of them', async () => {
    const browser = new RemoteBrowser();
    expect((await browser.register(server.baseUrl, uniqueName('relay'))).status).to.equal(302);
    const token = await browser.token(server.baseUrl);
    const use = () => onNewConnection(server, '/api/me', { Authorization: `Bearer ${token}` });
    // Both workers have accepted (and so cache) the token.
    for (const answer of await untilEachWorker(pids, use)) expect(answer.status).to.equal(200);
    expect((await browser.logout(server.baseUrl)).status).to.equal(302);
    const took = await waitUntil(async () => (await untilEachWorker(pids, use)).every((a) => a.status === 401), 1_000, 10);
    timing('refused on both workers after', took);
  });
});
