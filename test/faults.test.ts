import { expect } from 'chai';
import { QueryTypes } from 'sequelize';
import { openDatabase } from '../models/database.js';
import { tempSqliteUrl } from './helpers/app.js';
import { STRONG_PASSWORD, uniqueName } from './helpers/browser.js';
import { blockConnections, createTestDatabase, restoreConnections, testDatabaseUrl, type TestDatabase } from './helpers/postgres.js';
import type { ServerProcess } from './helpers/process.js';
import { callApi, RemoteBrowser, startInstances, waitUntil, type Instances, type Reply } from './helpers/remote-browser.js';

function timing(label: string, ms: number): void {
  process.stdout.write(`      [timing] ${label}: ${ms} ms\n`);
}

/** A stack trace or internals in a response body. */
const LEAK = /\bat .+:\d+:\d+|node_modules|Sequelize|sqlite|postgres|pg_|ECONNREFUSED|terminating connection/i;

/** Enough that some are still hashing when the fifth answer arrives, even on a busy machine (50 were all answered once). */
const REGISTRATIONS = 100;

describe(`faults: SIGKILL in the middle of ${REGISTRATIONS} concurrent registrations (SQLite file)`, function () {
  this.timeout(90_000);
  this.slow(15_000);

  let db: ReturnType<typeof tempSqliteUrl>;
  let env: Record<string, string>;
  let killed: Instances | undefined;
  let restarted: Instances | undefined;

  before(() => {
    db = tempSqliteUrl();
    env = { DATABASE_URL: db.url, REGISTER_IP_MAX: '1000', LOGIN_IP_MAX_FAILURES: '1000' };
  });
  after(async () => {
    await restarted?.stopAll();
    await killed?.stopAll();
    db?.cleanup();
  });

  it('keeps every user whose registration got a 302, and the file passes PRAGMA integrity_check', async () => {
    killed = await startInstances(1, env);
    const first = killed.servers[0]!;
    const people = Array.from({ length: REGISTRATIONS }, () => ({ browser: new RemoteBrowser(), username: uniqueName('kill') }));
    const csrfs = await Promise.all(people.map(({ browser }) => browser.csrf(`${first.baseUrl}/auth/register`)));

    const outcomes: Array<number | 'failed'> = Array(REGISTRATIONS).fill('failed');
    let answered = 0;
    let killedAfter = -1;
    const requests = people.map(({ browser, username }, i) =>
      browser
        .postForm(`${first.baseUrl}/auth/register`, { _csrf: csrfs[i]!, username, password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD })
        .then((res: Reply) => {
          outcomes[i] = res.status;
          answered += 1;
          // Killed while most registrations are still hashing or writing.
          if (answered === 5) {
            killedAfter = answered;
            first.child.kill('SIGKILL');
          }
        })
        .catch(() => undefined),
    );
    await Promise.all(requests);
    const exit = await first.exited;
    expect(exit.signal).to.equal('SIGKILL');
    const ok = outcomes.flatMap((s, i) => (s === 302 ? [i] : []));
    const cut = outcomes.filter((s) => s === 'failed').length;
    expect(killedAfter, 'the kill happened mid-run').to.equal(5);
    expect(outcomes.every((s) => s === 302 || s === 'failed'), String(outcomes)).to.equal(true);
    // The five answered before the kill (and nothing else had to be); some were still in flight.
    expect(ok.length, 'registrations answered 302 before the kill').to.be.within(5, REGISTRATIONS - 1);
    expect(cut, 'registrations cut off by the kill').to.equal(REGISTRATIONS - ok.length);

    // The file is consistent before anything else opens it (WAL replayed by this connection).
    const database = await openDatabase(env.DATABASE_URL!);
    try {
      const [check] = await database.sequelize.query<{ integrity_check: string }>('PRAGMA integrity_check', { type: QueryTypes.SELECT });
      expect(check!.integrity_check).to.equal('ok');
      const [fk] = await database.sequelize.query<{ n: number }>('SELECT COUNT(*) AS n FROM pragma_foreign_key_check', { type: QueryTypes.SELECT });
      expect(Number(fk!.n)).to.equal(0);
      const stored = await database.users.count();
      process.stdout.write(`      [counts] ${ok.length} registrations answered 302 before the SIGKILL, ${cut} cut off; ${stored} users stored\n`);
      expect(stored).to.be.within(ok.length, REGISTRATIONS);
    } finally {
      await database.close();
    }

    // The same settings as before the kill: its .env, secrets and database.
    restarted = await startInstances(1, killed.envs[0]!);
    const base = restarted.servers[0]!.baseUrl;
    const start = Date.now();
    for (let i = 0; i < ok.length; i += 10) {
      const batch = ok.slice(i, i + 10);
      const logins = await Promise.all(batch.map((index) => new RemoteBrowser().login(base, people[index]!.username)));
      expect(logins.map((r) => r.status), `logins of ${batch.map((index) => people[index]!.username).join(', ')}`).to.deep.equal(batch.map(() => 302));
    }
    timing(`${ok.length} sign-ins after the restart`, Date.now() - start);
    // A registration cut off by the kill either never happened or completed: the name is free or signs in.
    for (const index of outcomes.flatMap((s, i) => (s === 'failed' ? [i] : [])).slice(0, 5)) {
      const again = await new RemoteBrowser().register(base, people[index]!.username);
      if (again.status === 302) continue;
      expect(again.status, 'a cut-off registration left a half-made account').to.equal(409);
      expect((await new RemoteBrowser().login(base, people[index]!.username)).status).to.equal(302);
    }
  });
});

describe('faults: the PostgreSQL database goes away under load and comes back', function () {
  this.timeout(90_000);
  this.slow(20_000);

  /** How long the database refuses every connection. */
  const OUTAGE_MS = 5_000;

  let db: TestDatabase;
  let app: Instances;
  let server: ServerProcess;

  before(async function () {
    if (!testDatabaseUrl) return this.skip(); // needs PostgreSQL: run with TEST_DATABASE_URL
    db = await createTestDatabase();
    app = await startInstances(1, {
      DATABASE_URL: db.url,
      // Every bearer request reads the database.
      REVOCATION_CACHE_TTL: '0',
    });
    server = app.servers[0]!;
  });
  after(async () => {
    if (db) await restoreConnections(db.name).catch(() => undefined);
    await app?.stopAll();
    await db?.drop();
  });

  it('answers 503 (JSON for the API, a page for browsers, no stack) during the outage and recovers without a restart', async () => {
    const base = server.baseUrl;
    const user = new RemoteBrowser();
    const username = uniqueName('outage');
    expect((await user.register(base, username)).status).to.equal(302);
    const token = await user.token(base);

    interface Sample {
      at: number;
      name: string;
      status: number | 'network';
      type: string;
      retryAfter: string | null;
      body: string;
    }
    const samples: Sample[] = [];
    const probes: Array<[string, () => Promise<Reply>]> = [
      ['readyz', () => new RemoteBrowser().get(`${base}/readyz`)],
      ['api', () => callApi(base, token)],
      ['token', () => user.get(`${base}/auth/token`)],
      ['page', () => user.request(`${base}/account`, { headers: { Accept: 'text/html' } })],
      ['anonymous', () => new RemoteBrowser().request(`${base}/auth/login`, { headers: { Accept: 'text/html' } })],
    ];
    let running = true;
    const load = (async () => {
      // Light load: each probe in turn, two at a time, about every 50 ms.
      for (let i = 0; running; i += 2) {
        await Promise.all(
          [probes[i % probes.length]!, probes[(i + 1) % probes.length]!].map(async ([name, probe]) => {
            const at = Date.now();
            try {
              const res = await probe();
              samples.push({ at, name, status: res.status, type: res.headers.get('content-type') ?? '', retryAfter: res.headers.get('retry-after'), body: res.text });
            } catch {
              samples.push({ at, name, status: 'network', type: '', retryAfter: null, body: '' });
            }
          }),
        );
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    await new Promise((r) => setTimeout(r, 500));
    const down = Date.now();
    await blockConnections(db.name);
    const noticed = await waitUntil(async () => (await new RemoteBrowser().get(`${base}/readyz`)).status === 503, 5_000, 50);
    timing('outage noticed by /readyz', noticed);
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - down))));
    const up = Date.now();
    await restoreConnections(db.name);
    const recovered = await waitUntil(async () => (await new RemoteBrowser().get(`${base}/readyz`)).status === 200, 15_000, 100);
    timing(`recovered (/readyz 200) after a ${OUTAGE_MS} ms outage`, recovered);
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await load;

    const before = samples.filter((s) => s.at < down);
    const during = samples.filter((s) => s.at > down + 200 && s.at < up - 100);
    const unavailable = during.filter((s) => s.name !== 'anonymous');
    expect(before.length, 'requests made before the outage').to.be.at.least(4);
    expect(unavailable.length, 'database-backed requests made during the outage').to.be.above(10);
    // Before the outage everything answered 200.
    expect(before.map((s) => `${s.name} ${s.status}`)).to.deep.equal(before.map((s) => `${s.name} 200`));
    // Nothing failed as a 500 or by dropping the connection, at any time.
    const bad = samples.filter((s) => s.status === 'network' || (typeof s.status === 'number' && s.status >= 500 && s.status !== 503));
    expect(bad.map((s) => `${s.name} ${s.status}`)).to.deep.equal([]);
    // Every database-backed request during the outage was refused with exactly 503, and all but
    // the readiness probe (which promises only its status) with Retry-After: 5.
    expect(unavailable.map((s) => `${s.name} ${s.status} ${s.name === 'readyz' ? '-' : s.retryAfter}`)).to.deep.equal(
      unavailable.map((s) => `${s.name} 503 ${s.name === 'readyz' ? '-' : '5'}`),
    );
    // The anonymous sign-in form renders without the database, outage or not.
    const anonymous = during.filter((s) => s.name === 'anonymous');
    expect(anonymous.length).to.be.above(2);
    expect(anonymous.map((s) => `${s.status} ${s.type.split(';')[0]}`)).to.deep.equal(anonymous.map(() => '200 text/html'));
    for (const s of unavailable) {
      expect(s.body, `${s.name} leaked internals`).not.to.match(LEAK);
      if (s.name === 'readyz' || s.name === 'api' || s.name === 'token') {
        expect(s.type, s.name).to.match(/application\/json/);
        expect(JSON.parse(s.body)).to.have.property('error').that.is.a('string');
      } else {
        expect(s.type, s.name).to.match(/text\/html/);
      }
    }

    // Back to normal without a restart: the same session, token and a new sign-in all work.
    expect(server.child.exitCode).to.equal(null);
    expect((await callApi(base, token)).status).to.equal(200);
    expect(await user.token(base)).to.be.a('string');
    expect((await new RemoteBrowser().login(base, username)).status).to.equal(302);
    expect(server.stderr()).to.equal('');
    // The 5xx lines carry the error, never its SQL or bind parameters (session ids, session data).
    expect(server.stdout()).not.to.match(/"(sql|parameters)":(?!"\[redacted\]")/);
    expect(server.stdout()).not.to.match(/FROM sessions WHERE/i);
  });
});
