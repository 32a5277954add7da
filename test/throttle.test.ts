import { expect } from 'chai';
import { migrateUp } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';
import { Throttle } from '../services/throttle.js';
import { testConfig, tempSqliteUrl } from './helpers/app.js';

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
      await throttle.recordLoginFailure('alice', `10.0.0.${i}`);
    }
    const verdict = await throttle.checkLogin('alice', '10.9.9.9');
    expect(verdict.allowed).to.equal(false);
    if (!verdict.allowed) expect(verdict.retryAfterSeconds).to.be.within(1, 15 * 60);
    expect(await throttle.checkLogin('bob', '10.9.9.9')).to.deep.equal({ allowed: true });
  });

  it('doubles the block for an account that is blocked again the same day', async () => {
    const throttle = new Throttle(db.sequelize, { ...settings, accountMax: 2, accountWindowMs: 60_000 });
    await throttle.recordLoginFailure('carol', '10.0.0.1');
    await throttle.recordLoginFailure('carol', '10.0.0.1');
    const first = await throttle.checkLogin('carol', '10.0.0.2');
    await throttle.recordLoginFailure('carol', '10.0.0.1');
    const second = await throttle.checkLogin('carol', '10.0.0.2');
    expect(first.allowed || second.allowed).to.equal(false);
    if (!first.allowed && !second.allowed) {
      expect(first.retryAfterSeconds).to.be.within(55, 60);
      expect(second.retryAfterSeconds).to.be.within(115, 120);
    }
  });

  it('blocks an address spraying failures over many accounts', async () => {
    const throttle = new Throttle(db.sequelize, { ...settings, ipMax: 10 });
    for (let i = 0; i < 10; i += 1) await throttle.recordLoginFailure(`victim${i}`, '192.0.2.7');
    expect((await throttle.checkLogin('someone-new', '192.0.2.7')).allowed).to.equal(false);
    expect((await throttle.checkLogin('someone-new', '192.0.2.8')).allowed).to.equal(true);
  });

  it('clears an account count on success but not the address count', async () => {
    const throttle = new Throttle(db.sequelize, { ...settings, ipMax: 4 });
    for (let i = 0; i < 4; i += 1) await throttle.recordLoginFailure('dave', '192.0.2.9');
    await throttle.recordLoginSuccess('dave');
    expect((await throttle.checkLogin('dave', '192.0.2.10')).allowed).to.equal(true);
    expect((await throttle.checkLogin('dave', '192.0.2.9')).allowed).to.equal(false);
  });

  it('keeps counting across a restart (a new connection to the same file)', async () => {
    await new Throttle(db.sequelize, settings).recordLoginFailure('erin', '192.0.2.1');
    for (let i = 0; i < 4; i += 1) await new Throttle(db.sequelize, settings).recordLoginFailure('erin', '192.0.2.1');
    await db.close();
    db = await openDatabase(file.url);
    expect((await new Throttle(db.sequelize, settings).checkLogin('erin', '192.0.2.2')).allowed).to.equal(false);
  });

  it('limits registrations per address', async () => {
    const throttle = new Throttle(db.sequelize, { ...settings, registerMax: 3 });
    for (let i = 0; i < 3; i += 1) {
      expect((await throttle.checkRegistration('198.51.100.1')).allowed).to.equal(true);
      await throttle.recordRegistration('198.51.100.1');
    }
    expect((await throttle.checkRegistration('198.51.100.1')).allowed).to.equal(false);
    expect((await throttle.checkRegistration('198.51.100.2')).allowed).to.equal(true);
  });
});
