import { expect } from 'chai';
import request from 'supertest';
import { LISTENER_APPLICATION_NAME } from '../models/change-feed.js';
import { AuditLog } from '../services/audit-log.js';
import { KeySetService } from '../services/signing-keys.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { csrfFrom, userWithToken } from './helpers/browser.js';
import { runUsersCli } from './helpers/cli.js';
import { adminQuery, testDatabaseUrl } from './helpers/postgres.js';

/** Long enough that only a pushed change, never the cache expiring, can explain a refusal within 1 s. */
const CACHE_TTL = '5000';

async function status(t: TestApp, token: string): Promise<number> {
  return (await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`)).status;
}

/** Polls every 10 ms until `t` refuses `token`; the milliseconds it took, or Infinity after `withinMs`. */
async function refusedWithin(t: TestApp, token: string, withinMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start <= withinMs) {
    if ((await status(t, token)) === 401) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 10));
  }
  return Infinity;
}

async function waitForListener(t: TestApp): Promise<void> {
  const start = Date.now();
  while (!t.database.changes.connected) {
    if (Date.now() - start > 10_000) throw new Error('the change feed never connected');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('revocation across instances on PostgreSQL (LISTEN/NOTIFY)', function () {
  this.timeout(60_000);
  let a: TestApp;
  let b: TestApp;

  before(async function () {
    if (!testDatabaseUrl) this.skip(); // run with TEST_DATABASE_URL=postgres://…
    a = await startTestApp({ env: { REVOCATION_CACHE_TTL: CACHE_TTL } });
    b = await startTestApp({ databaseUrl: a.config.databaseUrl, env: { REVOCATION_CACHE_TTL: CACHE_TTL } });
    await Promise.all([waitForListener(a), waitForListener(b)]);
  });
  after(async () => {
    await b?.close();
    await a?.close();
  });

  /** A user signed in on A whose token B has already accepted (and so caches for CACHE_TTL). */
  async function cachedOnB() {
    const user = await userWithToken(a.server);
    expect(await status(b, user.token)).to.equal(200);
    return user;
  }

  it('refuses on B within 1 s a token whose session signed out on A', async () => {
    const { agent, token } = await cachedOnB();
    const _csrf = csrfFrom((await agent.get('/account').expect(200)).text);
    await agent.post('/auth/logout').type('form').send({ _csrf }).expect(302);
    expect(await refusedWithin(b, token, 1000)).to.be.below(1000);
  });

  it('refuses on B within 1 s the tokens of a user disabled from the command line', async () => {
    const { username, token } = await cachedOnB();
    const cli = await runUsersCli(['disable', username], { databaseUrl: a.config.databaseUrl });
    expect(cli.code, cli.stderr).to.equal(0);
    expect(await refusedWithin(b, token, 1000)).to.be.below(1000);
  });

  it('reconnects after its connection is cut, and drops everything cached once back (changes sent meanwhile are lost)', async () => {
    const { agent, token } = await cachedOnB();
    const database = new URL(a.config.databaseUrl).pathname.slice(1);
    const cut = await adminQuery('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2', [database, LISTENER_APPLICATION_NAME]);
    expect(cut.rowCount, 'both listeners cut').to.equal(2);
    // Signed out while B cannot hear it.
    const _csrf = csrfFrom((await agent.get('/account').expect(200)).text);
    await agent.post('/auth/logout').type('form').send({ _csrf }).expect(302);
    // Back within its first retry (250 ms), then B's cache is dropped: refused long before the 5 s TTL.
    expect(await refusedWithin(b, token, 2500)).to.be.below(2500);
    await waitForListener(b);
    const again = await cachedOnB();
    const csrf2 = csrfFrom((await again.agent.get('/account').expect(200)).text);
    await again.agent.post('/auth/logout').type('form').send({ _csrf: csrf2 }).expect(302);
    expect(await refusedWithin(b, again.token, 1000)).to.be.below(1000);
  });
});

describe('key changes across instances on PostgreSQL (LISTEN/NOTIFY)', function () {
  this.timeout(60_000);
  let a: TestApp;
  let b: TestApp;

  before(async function () {
    if (!testDatabaseUrl) this.skip();
    a = await startTestApp({ env: { JWT_ALGORITHM: 'ES256' } });
    b = await startTestApp({ databaseUrl: a.config.databaseUrl, env: { JWT_ALGORITHM: 'ES256' } });
    await Promise.all([waitForListener(a), waitForListener(b)]);
  });
  after(async () => {
    await b?.close();
    await a?.close();
  });

  it('refuses on B, well within its 2 s reload, the tokens of a key revoked on A (three times in a row)', async () => {
    const keys = new KeySetService({ store: a.signingKeys!.keySet, audit: new AuditLog(a.database, Date.now), keys: a.signingKeys, changes: a.database.changes });
    for (let i = 0; i < 3; i += 1) {
      const { token } = await userWithToken(a.server);
      expect(await status(b, token)).to.equal(200);
      const kid = a.signingKeys!.signer().kid;
      await keys.revoke(kid, { ip: null, userAgent: 'test' });
      // B reloads every 2 s by itself: three refusals each within 400 ms would be luck (about 1 in 125) without the push.
      expect(await refusedWithin(b, token, 400), `round ${i + 1}`).to.be.below(400);
    }
  });
});
