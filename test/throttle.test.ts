import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import { migrateUp } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';
import { Throttle } from '../services/throttle.js';
import { CounterStore } from '../services/throttle-store.js';
import { freshDatabase, testConfig, tempSqliteUrl } from './helpers/app.js';

const MINUTE = 60_000;

/** A clock the test moves by hand. */
function movableClock(start = Date.UTC(2030, 0, 1)) {
  const clock = { now: start };
  return { clock, read: () => clock.now };
}

/** One password check on `account` from `ip` with a given outcome; the guarded result, or 'refused'. */
async function attempt(throttle: Throttle, account: string, ip: string, correct: boolean): Promise<'ok' | 'wrong' | 'refused'> {
  const guarded = await throttle.guardPasswordCheck(account, ip, async () => correct, (ok) => !ok);
  if (!guarded.allowed) return 'refused';
  return guarded.result ? 'ok' : 'wrong';
}

const fail = (throttle: Throttle, account: string, ip: string) => attempt(throttle, account, ip, false);

describe('throttle counters in the database', () => {
  let db: Database;
  let file: ReturnType<typeof tempSqliteUrl>;
  let time: ReturnType<typeof movableClock>;
  const settings = testConfig().throttle;
  const throttleWith = (changes: Partial<typeof settings> = {}) => new Throttle(new CounterStore(db.sequelize, time.read), { ...settings, ...changes });

  beforeEach(async () => {
    file = tempSqliteUrl();
    db = await openDatabase(file.url);
    await migrateUp(db);
    time = movableClock();
  });
  afterEach(async () => {
    await db.close();
    file.cleanup();
  });

  it('uses the contract defaults: 5 per account and 50 per address in 15 minutes, 50 registrations an hour, 5 wrong second-factor codes in 15 minutes', () => {
    expect(settings).to.deep.equal({
      accountMax: 5,
      accountWindowMs: 15 * 60_000,
      ipMax: 50,
      ipWindowMs: 15 * 60_000,
      registerMax: 50,
      registerWindowMs: 60 * 60_000,
      clientMax: 50,
      clientWindowMs: 15 * 60_000,
      secondFactorMax: 5,
      secondFactorWindowMs: 15 * 60_000,
    });
  });

  it('blocks an account after its fifth failure and says when to retry', async () => {
    const throttle = throttleWith();
    for (let i = 0; i < 5; i += 1) {
      expect(await throttle.checkLogin('alice', `10.0.0.${i}`)).to.deep.equal({ allowed: true });
      expect(await fail(throttle, 'alice', `10.0.0.${i}`)).to.equal('wrong');
    }
    expect(await throttle.checkLogin('alice', '10.9.9.9')).to.deep.equal({ allowed: false, retryAfterSeconds: 15 * 60 });
    expect(await attempt(throttle, 'alice', '10.9.9.9', true), 'the right password while blocked').to.equal('refused');
    expect(await throttle.checkLogin('bob', '10.9.9.9')).to.deep.equal({ allowed: true });
  });

  it('ends the block when its time is up', async () => {
    const throttle = throttleWith();
    for (let i = 0; i < 5; i += 1) await fail(throttle, 'alice', '10.0.0.1');
    time.clock.now += 15 * MINUTE - 1000;
    expect((await throttle.checkLogin('alice', '10.0.0.2')).allowed).to.equal(false);
    time.clock.now += 1000;
    expect(await attempt(throttle, 'alice', '10.0.0.2', true)).to.equal('ok');
  });

  it('doubles the block for an account that is blocked again the same day', async () => {
    const throttle = throttleWith({ accountMax: 2, accountWindowMs: MINUTE });
    await fail(throttle, 'carol', '10.0.0.1');
    await fail(throttle, 'carol', '10.0.0.1');
    expect(await throttle.checkLogin('carol', '10.0.0.2')).to.deep.equal({ allowed: false, retryAfterSeconds: 60 });
    time.clock.now += MINUTE;
    expect(await fail(throttle, 'carol', '10.0.0.1')).to.equal('wrong');
    expect(await fail(throttle, 'carol', '10.0.0.1')).to.equal('wrong');
    expect(await throttle.checkLogin('carol', '10.0.0.2')).to.deep.equal({ allowed: false, retryAfterSeconds: 120 });
  });

  it('blocks an address spraying failures over many accounts', async () => {
    const throttle = throttleWith({ ipMax: 10 });
    for (let i = 0; i < 10; i += 1) expect(await fail(throttle, `victim${i}`, '192.0.2.7')).to.equal('wrong');
    expect((await throttle.checkLogin('someone-new', '192.0.2.7')).allowed).to.equal(false);
    expect(await fail(throttle, 'someone-new', '192.0.2.7')).to.equal('refused');
    expect((await throttle.checkLogin('someone-new', '192.0.2.8')).allowed).to.equal(true);
  });

  it('clears an account count on success but not the failures its address made', async () => {
    const throttle = throttleWith({ ipMax: 4 });
    for (let i = 0; i < 3; i += 1) await fail(throttle, 'dave', '192.0.2.9');
    expect(await attempt(throttle, 'dave', '192.0.2.10', true)).to.equal('ok');
    for (let i = 0; i < 4; i += 1) await fail(throttle, 'dave', '192.0.2.10');
    expect((await throttle.checkLogin('dave', '192.0.2.11')).allowed, 'account count restarted from zero').to.equal(true);
    await fail(throttle, 'erin', '192.0.2.9');
    expect((await throttle.checkLogin('frank', '192.0.2.9')).allowed, 'address kept its failures').to.equal(false);
  });

  it('counts no success against the account or the address', async () => {
    const throttle = throttleWith({ accountMax: 2, ipMax: 2 });
    for (let i = 0; i < 10; i += 1) expect(await attempt(throttle, 'gina', '192.0.2.12', true), `sign-in ${i + 1}`).to.equal('ok');
    expect(await throttle.checkLogin('gina', '192.0.2.12')).to.deep.equal({ allowed: true });
  });

  it('keeps counting across a restart (a new connection to the same file)', async () => {
    for (let i = 0; i < 5; i += 1) await fail(throttleWith(), 'erin', '192.0.2.1');
    await db.close();
    db = await openDatabase(file.url);
    expect((await throttleWith().checkLogin('erin', '192.0.2.2')).allowed).to.equal(false);
  });

  it('limits registrations per address, and gives back only the ones refused for their form', async () => {
    const throttle = throttleWith({ registerMax: 3 });
    expect(await throttle.beginRegistration('198.51.100.1')).to.deep.equal({ allowed: true });
    await throttle.registrationFailed('198.51.100.1');
    for (let i = 0; i < 3; i += 1) expect(await throttle.beginRegistration('198.51.100.1')).to.deep.equal({ allowed: true });
    expect(await throttle.beginRegistration('198.51.100.1')).to.deep.equal({ allowed: false, retryAfterSeconds: 3600 });
    expect(await throttle.beginRegistration('198.51.100.2')).to.deep.equal({ allowed: true });
  });
});

/**
 * A fresh migrated database per test (a SQLite file, or a PostgreSQL database of its own
 * when TEST_DATABASE_URL is set) with a counter store on a movable clock.
 */
function counterStoreEachTest() {
  const ctx = {} as { db: Database; store: CounterStore; time: ReturnType<typeof movableClock> };
  let fresh: Awaited<ReturnType<typeof freshDatabase>>;
  beforeEach(async () => {
    fresh = await freshDatabase();
    ctx.db = await openDatabase(fresh.url);
    await migrateUp(ctx.db);
    ctx.time = movableClock();
    ctx.store = new CounterStore(ctx.db.sequelize, ctx.time.read);
  });
  afterEach(async () => {
    await ctx.db.close();
    await fresh.cleanup();
  });
  return ctx;
}

describe('throttled password checks under concurrency', () => {
  const settings = { ...testConfig().throttle, accountMax: 5, ipMax: 50 };
  const ctx = counterStoreEachTest();

  /** Runs `n` checks of one account at once; each takes a few ms; counts checks run and the most at once. */
  async function burst(n: number, correct: boolean, ip = (i: number) => `192.0.2.${i + 1}`) {
    const throttle = new Throttle(ctx.store, settings);
    let running = 0;
    let mostAtOnce = 0;
    let checks = 0;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        throttle.guardPasswordCheck('hal', ip(i), async () => {
          checks += 1;
          running += 1;
          mostAtOnce = Math.max(mostAtOnce, running);
          await sleep(3);
          running -= 1;
          return correct;
        }, (ok) => !ok),
      ),
    );
    return { checks, mostAtOnce, allowed: results.filter((r) => r.allowed).length, refused: results.filter((r) => !r.allowed).length };
  }

  it('lets 40 concurrent correct checks of one account all through, at most the limit at once', async () => {
    const r = await burst(40, true);
    expect(r).to.deep.equal({ checks: 40, mostAtOnce: r.mostAtOnce, allowed: 40, refused: 0 });
    expect(r.mostAtOnce).to.be.within(1, 5);
  });

  it('runs exactly the limit of checks when 40 wrong guesses arrive at once, and refuses the rest', async () => {
    const r = await burst(40, false);
    expect(r).to.deep.equal({ checks: 5, mostAtOnce: r.mostAtOnce, allowed: 5, refused: 35 });
    expect(r.mostAtOnce).to.be.within(1, 5);
    expect((await new Throttle(ctx.store, settings).checkLogin('hal', '203.0.113.1')).allowed).to.equal(false);
  });

  it('bounds checks in flight per address too (one address, many accounts)', async () => {
    const throttle = new Throttle(ctx.store, { ...settings, ipMax: 3 });
    let checks = 0;
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        throttle.guardPasswordCheck(`acct${i}`, '198.51.100.9', async () => {
          checks += 1;
          await sleep(3);
          return false;
        }, (ok) => !ok),
      ),
    );
    expect(checks).to.equal(3);
    expect(results.filter((r) => !r.allowed).length).to.equal(9);
  });

  it('gives the slot of a check that throws back and counts nothing', async () => {
    const throttle = new Throttle(ctx.store, settings);
    for (let i = 0; i < 6; i += 1) {
      const outcome = await throttle
        .guardPasswordCheck('ivan', '192.0.2.30', async () => {
          throw new Error('database went away');
        }, () => true)
        .then(() => 'resolved', (err: Error) => err.message);
      expect(outcome).to.equal('database went away');
    }
    expect(await attempt(throttle, 'ivan', '192.0.2.30', true)).to.equal('ok');
    expect(await throttle.checkLogin('ivan', '192.0.2.30')).to.deep.equal({ allowed: true });
  });

  it('waits for slots held by a process that died, until their counter resets', async () => {
    // Five checks in flight that will never settle (their process was killed mid-check).
    for (let i = 0; i < 5; i += 1) await ctx.store.slide('login_account_checks:judy', 1, 60_000);
    const throttle = new Throttle(ctx.store, settings);
    let settled = false;
    const waiting = attempt(throttle, 'judy', '192.0.2.40', true).finally(() => {
      settled = true;
    });
    await sleep(50);
    expect(settled, 'still waiting while the slots are held').to.equal(false);
    ctx.time.clock.now += 60_000;
    expect(await waiting).to.equal('ok');
  });
});

describe('CounterStore', () => {
  const ctx = counterStoreEachTest();

  it('never takes a counter below zero, nor creates a negative one', async () => {
    expect(await ctx.store.add('k:fresh', -1, MINUTE)).to.deep.equal({ points: 0, msBeforeReset: MINUTE });
    expect((await ctx.store.add('k:fresh', 1, MINUTE)).points).to.equal(1);
    await ctx.store.add('k:live', 2, MINUTE);
    expect((await ctx.store.add('k:live', -5, MINUTE)).points).to.equal(0);
  });

  it('keeps a fixed window for add and moves the end with every slide', async () => {
    await ctx.store.add('k:fixed', 1, MINUTE);
    await ctx.store.slide('k:slide', 1, MINUTE);
    ctx.time.clock.now += 40_000;
    expect(await ctx.store.add('k:fixed', 1, MINUTE)).to.deep.equal({ points: 2, msBeforeReset: 20_000 });
    expect(await ctx.store.slide('k:slide', 1, MINUTE)).to.deep.equal({ points: 2, msBeforeReset: MINUTE });
    ctx.time.clock.now += 20_000;
    expect(await ctx.store.get('k:fixed'), 'reset at the end of its window').to.equal(null);
    expect((await ctx.store.get('k:slide'))?.points).to.equal(2);
  });

  it('stores a very long key by its hash and still finds it', async () => {
    const key = `login_account:${'x'.repeat(10_000)}`;
    await ctx.store.add(key, 3, MINUTE);
    expect((await ctx.store.get(key))?.points).to.equal(3);
    const [rows] = await ctx.db.sequelize.query('SELECT rl_key FROM rate_limits');
    expect((rows as { rl_key: string }[])[0]!.rl_key).to.match(/^login_account:sha256:[0-9a-f]{64}$/);
  });
});
