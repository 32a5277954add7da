import { expect } from 'chai';
import { migrateUp } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';
import { Throttle } from '../services/throttle.js';
import { testConfig, tempSqliteUrl } from './helpers/app.js';

/** One wrong password from `ip` on `account`, as the login route counts it. */
async function fail(throttle: Throttle, account: string, ip: string): Promise<void> {
  const verdict = await throttle.beginLogin(account, ip);
  if (verdict.allowed) await throttle.loginFailed(verdict.reservation);
}

describe('throttle counters in the database', () => {
  let db: Database;
  let file: ReturnType<typeof tempSqliteUrl>;
  const settings = testConfig().throttle;

  beforeEach(async () => {
    file = tempSqliteUrl();
    db = await openDatabase(file.url);
    await migrateUp(db);
  });
  afterEach(async () => {
    await db.close();
    file.cleanup();
  });

  it('uses the contract defaults: 5 per account and 50 per address in 15 minutes, 50 registrations an hour', () => {
    expect(settings).to.deep.equal({
      accountMax: 5,
      accountWindowMs: 15 * 60_000,
      ipMax: 50,
      ipWindowMs: 15 * 60_000,
      registerMax: 50,
      registerWindowMs: 60 * 60_000,
    });
  });

  it('blocks an account after its fifth failure and says when to retry', async () => {
    const throttle = new Throttle(db.sequelize, settings);
    for (let i = 0; i < 5; i += 1) {
      expect(await throttle.checkLogin('alice', `10.0.0.${i}`)).to.deep.equal({ allowed: true });
      await fail(throttle, 'alice', `10.0.0.${i}`);
    }
    const verdict = await throttle.checkLogin('alice', '10.9.9.9');
    expect(verdict.allowed).to.equal(false);
    if (!verdict.allowed) expect(verdict.retryAfterSeconds).to.be.within(1, 15 * 60);
    expect(await throttle.checkLogin('bob', '10.9.9.9')).to.deep.equal({ allowed: true });
  });

  it('doubles the block for an account that is blocked again the same day', async () => {
    const throttle = new Throttle(db.sequelize, { ...settings, accountMax: 2, accountWindowMs: 60_000 });
    await fail(throttle, 'carol', '10.0.0.1');
    await fail(throttle, 'carol', '10.0.0.1');
    const first = await throttle.checkLogin('carol', '10.0.0.2');
    // The block ends (here: is lifted by hand), then the account fails twice again the same day.
    await db.sequelize.query("DELETE FROM rate_limits WHERE rl_key LIKE 'login_account%'");
    await fail(throttle, 'carol', '10.0.0.1');
    await fail(throttle, 'carol', '10.0.0.1');
    const second = await throttle.checkLogin('carol', '10.0.0.2');
    expect(first.allowed || second.allowed).to.equal(false);
    if (!first.allowed && !second.allowed) {
      expect(first.retryAfterSeconds).to.be.within(55, 60);
      expect(second.retryAfterSeconds).to.be.within(115, 120);
    }
  });

  it('blocks an address spraying failures over many accounts', async () => {
    const throttle = new Throttle(db.sequelize, { ...settings, ipMax: 10 });
    for (let i = 0; i < 10; i += 1) await fail(throttle, `victim${i}`, '192.0.2.7');
    expect((await throttle.checkLogin('someone-new', '192.0.2.7')).allowed).to.equal(false);
    expect((await throttle.checkLogin('someone-new', '192.0.2.8')).allowed).to.equal(true);
  });

  it('clears an account count on success but not the failures its address made', async () => {
    const throttle = new Throttle(db.sequelize, { ...settings, ipMax: 4 });
    for (let i = 0; i < 3; i += 1) await fail(throttle, 'dave', '192.0.2.9');
    const success = await throttle.beginLogin('dave', '192.0.2.10');
    expect(success.allowed).to.equal(true);
    if (success.allowed) await throttle.loginSucceeded(success.reservation);
    for (let i = 0; i < 4; i += 1) await fail(throttle, 'dave', '192.0.2.10');
    expect((await throttle.checkLogin('dave', '192.0.2.11')).allowed, 'account count restarted from zero').to.equal(true);
    await fail(throttle, 'erin', '192.0.2.9');
    expect((await throttle.checkLogin('frank', '192.0.2.9')).allowed, 'address kept its three failures').to.equal(false);
  });

  it('keeps counting across a restart (a new connection to the same file)', async () => {
    for (let i = 0; i < 5; i += 1) await fail(new Throttle(db.sequelize, settings), 'erin', '192.0.2.1');
    await db.close();
    db = await openDatabase(file.url);
    expect((await new Throttle(db.sequelize, settings).checkLogin('erin', '192.0.2.2')).allowed).to.equal(false);
  });

  it('limits registrations per address', async () => {
    const throttle = new Throttle(db.sequelize, { ...settings, registerMax: 3 });
    for (let i = 0; i < 3; i += 1) {
      expect((await throttle.beginRegistration('198.51.100.1')).allowed).to.equal(true);
    }
    expect((await throttle.checkRegistration('198.51.100.1')).allowed).to.equal(false);
    expect((await throttle.checkRegistration('198.51.100.2')).allowed).to.equal(true);
  });
});
