import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import { QueryTypes } from 'sequelize';
import { migrations } from '../migrations/index.js';
import { migrateUp } from '../migrations/runner.js';
import { openDatabase } from '../models/database.js';
import { freshDatabase } from './helpers/app.js';
import { STRONG_PASSWORD, uniqueName } from './helpers/browser.js';
import type { ServerProcess } from './helpers/process.js';
import { callApi, concurrentSignIns, RemoteBrowser, startInstances, waitUntil, type Instances } from './helpers/remote-browser.js';

/** The contract's bound: a revocation reaches every instance within 5 s. */
const REVOCATION_BOUND_MS = 5_000;

/** Logs how long something took, for the timings report. */
function timing(label: string, ms: number): void {
  process.stdout.write(`      [timing] ${label}: ${ms} ms\n`);
}

/**
 * Three real app processes (A, B, C) on one database: PostgreSQL with
 * TEST_DATABASE_URL, else one SQLite file. They start at the same moment on
 * the empty database, so they also race to migrate it.
 */
describe('several instances on one database', function () {
  this.timeout(90_000);
  this.slow(10_000);

  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let group: Instances;
  let A: string;
  let B: string;
  let C: string;
  let servers: ServerProcess[];
  let startMs: number;

  before(async () => {
    db = await freshDatabase();
    const start = Date.now();
    group = await startInstances(3, { DATABASE_URL: db.url, LOG_LEVEL: 'info', REVOCATION_CACHE_TTL: '2000' });
    startMs = Date.now() - start;
    servers = group.servers;
    [A, B, C] = servers.map((s) => s.baseUrl) as [string, string, string];
  });
  after(async () => {
    await group?.stopAll();
    await db?.cleanup();
  });

  it('all start at once on an empty database; the migrations run once (lock) and are recorded once', async () => {
    timing(`3 instances started together (${db.dialect})`, startMs);
    const all = migrations.map((m) => m.name);
    const appliedBy = servers.map((s) => s.logLines().find((l) => l.msg === 'migrations applied')?.migrations);
    // Exactly one instance applied them all; the others waited on the lock and found nothing pending.
    expect(appliedBy.filter(Boolean), JSON.stringify(appliedBy)).to.deep.equal([all]);
    const database = await openDatabase(db.url);
    try {
      const rows = await database.sequelize.query<{ name: string }>('SELECT name FROM migrations_meta ORDER BY name', { type: QueryTypes.SELECT });
      expect(rows.map((r) => r.name)).to.deep.equal(all);
    } finally {
      await database.close();
    }
    for (const s of servers) expect(s.stderr()).to.equal('');
  });

  it('signs in on A, mints on B and calls the API on C', async () => {
    const browser = new RemoteBrowser();
    const username = uniqueName('multi');
    expect((await browser.register(A, username)).status).to.equal(302);
    const token = await browser.token(B);
    const me = await callApi(C, token);
    expect(me.status, me.text).to.equal(200);
    expect(JSON.parse(me.text)).to.include({ username });
    // The session made on A is the same session on C: the account page there lists it as this one.
    expect((await browser.get(`${C}/account`)).status).to.equal(200);
  });

  it('honours a sign-out on A on B within 5 s (token and cookie)', async () => {
    const browser = new RemoteBrowser();
    expect((await browser.register(A, uniqueName('out'))).status).to.equal(302);
    const token = await browser.token(A);
    // B has just checked this token: its answer is cached for REVOCATION_CACHE_TTL.
    expect((await callApi(B, token)).status).to.equal(200);
    const cookieCopy = browser.clone();

    const revokedAt = Date.now();
    expect((await browser.logout(A)).status).to.equal(302);
    const elapsed = await waitUntil(async () => (await callApi(B, token)).status === 401, REVOCATION_BOUND_MS, 100);
    timing('sign-out on A honoured by the API on B', Date.now() - revokedAt);
    expect(elapsed).to.be.below(REVOCATION_BOUND_MS);
    // The stolen cookie of the ended session is not signed in anywhere (sessions are read from the database).
    expect((await cookieCopy.get(`${B}/auth/token`)).status).to.equal(401);
  });

  it('honours a session revoked on A (account page) on B and C within 5 s', async () => {
    const username = uniqueName('revoke');
    const laptop = new RemoteBrowser();
    expect((await laptop.register(A, username)).status).to.equal(302);
    const phone = new RemoteBrowser();
    expect((await phone.login(B, username)).status).to.equal(302);
    const phoneToken = await phone.token(B);
    const phoneSession = (jwt.decode(phoneToken) as { sid: string }).sid;
    expect((await callApi(B, phoneToken)).status).to.equal(200);
    expect((await callApi(C, phoneToken)).status).to.equal(200);

    const _csrf = await laptop.csrf(`${A}/account`);
    const revokedAt = Date.now();
    const res = await laptop.postForm(`${A}/account/sessions/${phoneSession}/revoke`, { _csrf });
    expect(res.status, res.text.slice(0, 300)).to.be.oneOf([302, 303]);
    await Promise.all(
      [B, C].map((base) => waitUntil(async () => (await callApi(base, phoneToken)).status === 401, REVOCATION_BOUND_MS, 100)),
    );
    timing('session revoked on A honoured by the API on B and C', Date.now() - revokedAt);
    expect(Date.now() - revokedAt).to.be.below(REVOCATION_BOUND_MS + 500);
    expect((await phone.get(`${C}/auth/token`)).status).to.equal(401);
    // The laptop's own session is untouched.
    expect((await callApi(C, await laptop.token(C))).status).to.equal(200);
  });

  it('honours "sign out everywhere" on A for tokens used on B within 5 s', async () => {
    const browser = new RemoteBrowser();
    expect((await browser.register(A, uniqueName('everywhere'))).status).to.equal(302);
    const token = await browser.token(B);
    expect((await callApi(B, token)).status).to.equal(200);
    const _csrf = await browser.csrf(`${A}/account`);
    const revokedAt = Date.now();
    expect((await browser.postForm(`${A}/auth/logout-everywhere`, { _csrf })).status).to.equal(302);
    await waitUntil(async () => (await callApi(B, token)).status === 401, REVOCATION_BOUND_MS, 100);
    timing('sign-out-everywhere on A honoured by the API on B', Date.now() - revokedAt);
  });

  it('shares the brute-force counter: 5 failures spread over A and B block the account on C', async () => {
    const username = uniqueName('guess');
    const owner = new RemoteBrowser();
    expect((await owner.register(A, username)).status).to.equal(302);
    const attacker = new RemoteBrowser();
    for (const base of [A, B, A, B, A]) {
      const res = await attacker.login(base, username, `wrong ${STRONG_PASSWORD}`);
      expect(res.status, `a failed guess on ${base}`).to.be.oneOf([200, 401]);
    }
    // Blocked everywhere, even with the right password.
    const onC = await new RemoteBrowser().login(C, username, STRONG_PASSWORD);
    expect(onC.status).to.equal(429);
    expect(Number(onC.headers.get('retry-after'))).to.be.above(0);
    const onB = await new RemoteBrowser().login(B, username, STRONG_PASSWORD);
    expect(onB.status).to.equal(429);
  });

  it('signs in all of 40 concurrent correct sign-ins to one account spread over A, B and C', async () => {
    const username = uniqueName('burst');
    expect((await new RemoteBrowser().register(A, username)).status).to.equal(302);
    const { statuses, failedChecks } = await concurrentSignIns([A, B, C], db.url, username, STRONG_PASSWORD);
    expect(statuses).to.deep.equal(Array(40).fill(302));
    expect(failedChecks).to.equal(0);
  });

  it('checks exactly 5 passwords when 40 wrong guesses arrive at once over A, B and C, and answers the rest 429', async () => {
    const username = uniqueName('burst');
    expect((await new RemoteBrowser().register(B, username)).status).to.equal(302);
    const { statuses, failedChecks } = await concurrentSignIns([A, B, C], db.url, username, `wrong ${STRONG_PASSWORD}`);
    expect(statuses.filter((s) => s === 401).length, statuses.join(',')).to.equal(5);
    expect(statuses.filter((s) => s === 429).length, statuses.join(',')).to.equal(35);
    expect(failedChecks, 'password checks that failed (audit rows)').to.equal(5);
  });
});

describe('migrations started at once from several connections', function () {
  this.timeout(60_000);

  it('run once in all (the lock serialises them) and leave one record per migration', async () => {
    const db = await freshDatabase();
    const handles = await Promise.all(Array.from({ length: 4 }, () => openDatabase(db.url)));
    try {
      const results = await Promise.all(handles.map((h) => migrateUp(h)));
      const all = migrations.map((m) => m.name);
      expect(results.filter((r) => r.length > 0), JSON.stringify(results)).to.deep.equal([all]);
      const rows = await handles[0]!.sequelize.query<{ name: string; n: number | string }>(
        'SELECT name, COUNT(*) AS n FROM migrations_meta GROUP BY name ORDER BY name',
        { type: QueryTypes.SELECT },
      );
      expect(rows.map((r) => [r.name, Number(r.n)])).to.deep.equal(all.map((name) => [name, 1]));
    } finally {
      await Promise.all(handles.map((h) => h.close()));
      await db.cleanup();
    }
  });
});
