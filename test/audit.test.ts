import { expect } from 'chai';
import { QueryTypes } from 'sequelize';
import { migrateUp } from '../migrations/runner.js';
import type { AuditEventRow } from '../models/audit-event.js';
import { openDatabase, type Database } from '../models/database.js';
import { AuditLog, MAX_BATCH_ROWS } from '../services/audit-log.js';
import { Maintenance } from '../services/maintenance.js';
import { startTestApp, tempSqliteUrl, testConfig, type TestApp } from './helpers/app.js';
import { browser, csrfFrom, formToken, loginUser, sessionCookie, STRONG_PASSWORD, uniqueName, type Agent } from './helpers/browser.js';
import { runUsersCli } from './helpers/cli.js';

const NEW_PASSWORD = 'a brand new passphrase 77';
const WRONG_PASSWORD = 'wrong guess at the password 55';
const CLI_PASSWORD = 'piped in through stdin 9137';
const IP = '203.0.113.50';
const UA = 'AuditBrowser/1.0';
const OTHER_IP = '198.51.100.77';
const OTHER_UA = 'OtherBrowser/2.0';

const DAY = 24 * 60 * 60 * 1000;

describe('audit log over a full flow', function () {
  // Includes four runs of the users CLI (a fresh process each).
  this.timeout(60_000);

  let file: ReturnType<typeof tempSqliteUrl>;
  let t: TestApp;
  let username: string;
  let userId: number;
  let startedAt: number;
  let finishedAt: number;
  const tokens: string[] = [];
  const cookies: string[] = [];
  let revokedPublicId: string;
  let cliUser: string;
  let ghost: string;

  /** Every audit row, oldest first. */
  let rows: AuditEventRow[];

  function track(res: { headers: Record<string, unknown> }) {
    const cookie = sessionCookie(res);
    if (cookie) cookies.push(cookie);
  }

  async function login(agent: Agent, name: string, password: string) {
    const res = await loginUser(agent, name, password);
    track(res);
    return res;
  }

  async function mint(agent: Agent): Promise<string> {
    const res = await agent.get('/auth/token').expect(200);
    const token = (res.body as { token: string }).token;
    tokens.push(token);
    return token;
  }

  before(async () => {
    file = tempSqliteUrl();
    t = await startTestApp({ databaseUrl: file.url, env: { TRUST_PROXY: 'true', LOGIN_ACCOUNT_MAX_FAILURES: '2' } });
    startedAt = Date.now();

    const agent = browser(t.server).set('User-Agent', UA).set('X-Forwarded-For', IP);
    username = uniqueName('audited');
    const page = await agent.get('/auth/register').expect(200);
    const reg = await agent
      .post('/auth/register')
      .type('form')
      .send({ _csrf: csrfFrom(page.text), username, password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD })
      .expect(302);
    track(reg);
    userId = (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!.id;
    await mint(agent);
    await agent.post('/auth/logout').type('form').send({ _csrf: await formToken(agent, '/') }).expect(302);

    // A wrong password for the real account, then for a name that does not exist.
    expect((await login(agent, username, WRONG_PASSWORD)).status).to.equal(401);
    ghost = uniqueName('ghost');
    expect((await login(agent, ghost, WRONG_PASSWORD)).status).to.equal(401);
    expect((await login(agent, username, STRONG_PASSWORD)).status).to.equal(302);
    await mint(agent);

    // A second browser, revoked from the first.
    const other = browser(t.server).set('User-Agent', OTHER_UA).set('X-Forwarded-For', OTHER_IP);
    expect((await login(other, username, STRONG_PASSWORD)).status).to.equal(302);
    await mint(other);
    const otherPage = await other.get('/account').expect(200);
    revokedPublicId = decodeURIComponent(/<tr class="current">[\s\S]*?action="\/account\/sessions\/([^/"]+)\/revoke"/.exec(otherPage.text)![1]!);
    await agent
      .post(`/account/sessions/${encodeURIComponent(revokedPublicId)}/revoke`)
      .type('form')
      .send({ _csrf: await formToken(agent, '/account') })
      .expect(303);

    const changed = await agent
      .post('/account/password')
      .type('form')
      .send({ _csrf: await formToken(agent, '/account'), currentPassword: STRONG_PASSWORD, newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD })
      .expect(303);
    track(changed);
    await mint(agent);
    await agent.post('/auth/logout-everywhere').type('form').send({ _csrf: await formToken(agent, '/account') }).expect(302);

    // Two more failures block the account (limit 2 here); the next attempt is throttled.
    for (let i = 0; i < 2; i += 1) expect((await login(agent, username, WRONG_PASSWORD)).status).to.equal(401);
    expect((await login(agent, username, NEW_PASSWORD)).status).to.equal(429);

    // The operator's side.
    cliUser = uniqueName('operator');
    const cli = (args: string[], stdin?: string) => runUsersCli(args, { databaseUrl: file.url, stdin });
    expect((await cli(['create', cliUser, '--role', 'admin'], CLI_PASSWORD)).code).to.equal(0);
    for (const args of [['disable', username], ['enable', username], ['grant', username, 'auditor'], ['revoke', username, 'auditor']]) {
      const r = await cli(args);
      expect(r.code, r.stderr).to.equal(0);
    }
    finishedAt = Date.now();
    rows = await t.database.auditEvents.findAll({ order: [['id', 'ASC']] });
  });

  after(async () => {
    await t.close();
    file.cleanup();
  });

  function only(event: string, filter: (r: AuditEventRow) => boolean = () => true): AuditEventRow[] {
    return rows.filter((r) => r.event === event && filter(r));
  }

  function expectBrowserRow(row: AuditEventRow | undefined, ip = IP, ua = UA) {
    expect(row, 'row').to.not.equal(undefined);
    expect(row!.at).to.be.instanceOf(Date);
    expect(row!.at.getTime()).to.be.within(startedAt - 1000, finishedAt + 1000);
    expect(row!.userId).to.equal(userId);
    expect(row!.username).to.equal(username);
    expect(row!.ip).to.equal(ip);
    expect(row!.userAgent).to.equal(ua);
  }

  it('records registered', () => {
    expect(only('registered', (r) => r.userId === userId)).to.have.length(1);
    expectBrowserRow(only('registered', (r) => r.userId === userId)[0]);
  });

  it('records signed_in (both browsers)', () => {
    const signedIn = only('signed_in', (r) => r.userId === userId);
    expect(signedIn).to.have.length(2);
    expectBrowserRow(signedIn[0]);
    expectBrowserRow(signedIn[1], OTHER_IP, OTHER_UA);
  });

  it('records sign_in_failed for a real account with the user, and for an unknown name without the typed name', () => {
    const known = only('sign_in_failed', (r) => r.userId === userId);
    expect(known).to.have.length(3);
    expectBrowserRow(known[0]);
    const unknown = only('sign_in_failed', (r) => r.userId === null);
    expect(unknown).to.have.length(1);
    expect(unknown[0]!.username).to.equal(null);
    expect(unknown[0]!.ip).to.equal(IP);
    expect(unknown[0]!.userAgent).to.equal(UA);
    expect(rows.some((r) => Object.values(r.get({ plain: true })).some((v) => String(v).includes(ghost)))).to.equal(false);
  });

  it('records throttled', () => {
    const throttled = only('throttled', (r) => r.userId === userId);
    expect(throttled).to.have.length(1);
    expectBrowserRow(throttled[0]);
  });

  it('records signed_out', () => {
    const out = only('signed_out', (r) => r.userId === userId);
    expect(out).to.have.length(1);
    expectBrowserRow(out[0]);
  });

  it('records token_minted with the jti of each minted token as its detail', () => {
    const minted = only('token_minted', (r) => r.userId === userId);
    expect(minted).to.have.length(tokens.length);
    const jtis = tokens.map((token) => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string }).jti);
    expect(minted.map((r) => r.detail)).to.deep.equal(jtis);
    expectBrowserRow(minted[0]);
    expectBrowserRow(minted[2], OTHER_IP, OTHER_UA);
  });

  it('records password_changed', () => {
    const changed = only('password_changed', (r) => r.userId === userId);
    expect(changed).to.have.length(1);
    expectBrowserRow(changed[0]);
  });

  it('records session_revoked with the public id of the ended session', () => {
    const revoked = only('session_revoked', (r) => r.userId === userId);
    expect(revoked).to.have.length(1);
    expectBrowserRow(revoked[0]);
    expect(revoked[0]!.detail).to.equal(revokedPublicId);
  });

  it('records signed_out_everywhere', () => {
    const everywhere = only('signed_out_everywhere', (r) => r.userId === userId);
    expect(everywhere).to.have.length(1);
    expectBrowserRow(everywhere[0]);
  });

  it('records the CLI\'s disabled and enabled, with the user and the CLI as agent', () => {
    for (const event of ['disabled', 'enabled']) {
      const found = only(event, (r) => r.userId === userId);
      expect(found, event).to.have.length(1);
      expect(found[0]!.username).to.equal(username);
      expect(found[0]!.ip).to.equal(null);
      expect(found[0]!.userAgent).to.equal('users-cli');
      expect(found[0]!.at.getTime()).to.be.within(startedAt - 1000, finishedAt + 1000);
    }
  });

  it('records the CLI\'s role_granted and role_revoked with the role as detail', () => {
    const granted = only('role_granted', (r) => r.userId === userId);
    const revoked = only('role_revoked', (r) => r.userId === userId);
    expect(granted.map((r) => r.detail)).to.deep.equal(['auditor']);
    expect(revoked.map((r) => r.detail)).to.deep.equal(['auditor']);
    expect(granted[0]!.userAgent).to.equal('users-cli');
  });

  it('records the CLI\'s user_created, and role_granted for --role', () => {
    const created = only('user_created', (r) => r.username === cliUser);
    expect(created).to.have.length(1);
    expect(created[0]!.userId).to.be.a('number');
    expect(only('role_granted', (r) => r.username === cliUser).map((r) => r.detail)).to.deep.equal(['admin']);
  });

  it('keeps the events in the order they happened', () => {
    const mine = rows.filter((r) => r.userId === userId).map((r) => r.event);
    const order = ['registered', 'token_minted', 'signed_out', 'sign_in_failed', 'signed_in', 'session_revoked', 'password_changed', 'signed_out_everywhere', 'throttled', 'disabled', 'enabled', 'role_granted', 'role_revoked'];
    const firstIndex = order.map((event) => mine.indexOf(event as never));
    expect(firstIndex.every((i) => i >= 0), mine.join(',')).to.equal(true);
    expect([...firstIndex].sort((a, b) => a - b)).to.deep.equal(firstIndex);
  });

  it('never stores a password, token, JWT fragment, cookie value or password hash in any column', async () => {
    const raw = await t.database.sequelize.query<Record<string, unknown>>('SELECT * FROM audit_events', { type: QueryTypes.SELECT });
    expect(raw.length).to.equal(rows.length);
    const dump = raw.map((r) => Object.values(r).map((v) => String(v)).join('\u0000')).join('\n');

    const secrets: Array<[string, string]> = [];
    for (const password of [STRONG_PASSWORD, NEW_PASSWORD, WRONG_PASSWORD, CLI_PASSWORD]) secrets.push(['password', password]);
    for (const token of tokens) {
      secrets.push(['token', token]);
      for (const segment of token.split('.')) secrets.push(['JWT segment', segment]);
    }
    expect(cookies.length).to.be.at.least(4);
    for (const cookie of cookies) {
      const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
      secrets.push(['cookie', cookie], ['cookie value', value]);
      secrets.push(['session id', value.slice(2, value.lastIndexOf('.'))], ['cookie signature', value.slice(value.lastIndexOf('.') + 1)]);
    }
    const users = await t.database.users.findAll();
    for (const user of users) {
      secrets.push(['password hash', user.passwordHash]);
      secrets.push(['hash digest', user.passwordHash.slice(user.passwordHash.lastIndexOf('$') + 1)]);
    }
    for (const [kind, secret] of secrets) {
      expect(secret.length, kind).to.be.at.least(8);
      expect(dump.includes(secret), `${kind} found in the audit log`).to.equal(false);
    }
    expect(dump).to.not.match(/eyJ[A-Za-z0-9_-]{8,}/); // any base64url JSON object, e.g. a JWT header
    expect(dump).to.not.contain('$argon2');
  });
});

describe('AuditLog retention', () => {
  let db: Database;
  beforeEach(async () => {
    db = await openDatabase('sqlite::memory:');
    await migrateUp(db);
  });
  afterEach(() => db.close());

  it('recentForUser gives the newest events first, at most the limit, only the user\'s own', async () => {
    const clock = { now: Date.parse('2030-01-01T00:00:00Z') };
    const log = new AuditLog(db, () => clock.now);
    const user = await db.users.create({ username: 'someone', usernameKey: 'someone', passwordHash: 'x', roles: [] });
    const other = await db.users.create({ username: 'other', usernameKey: 'other', passwordHash: 'x', roles: [] });
    for (let i = 0; i < 25; i += 1) {
      clock.now += 1000;
      await log.record('token_minted', { userId: user.id, username: 'someone' }, `jti-${i}`);
      await log.record('token_minted', { userId: other.id, username: 'other' }, `other-${i}`);
    }
    const recent = await log.recentForUser(user.id, 20);
    expect(recent.map((e) => e.detail)).to.deep.equal(Array.from({ length: 20 }, (_, i) => `jti-${24 - i}`));
  });

  it('the maintenance pass prunes audit events past the configured AUDIT_RETENTION, by its injected clock', async () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    await db.auditEvents.bulkCreate([
      { at: new Date(now - 3 * DAY), event: 'signed_in', userId: null, username: 'old', ip: null, userAgent: null, detail: null },
      { at: new Date(now - 2 * DAY + 1000), event: 'signed_in', userId: null, username: 'almost', ip: null, userAgent: null, detail: null },
      { at: new Date(now - DAY / 2), event: 'signed_in', userId: null, username: 'recent', ip: null, userAgent: null, detail: null },
    ]);
    const config = testConfig({ AUDIT_RETENTION: '2d' });
    const settings = { auditRetentionMs: config.auditRetentionMs, sessionIdleTimeoutMs: config.session.idleTimeoutMs };
    expect(await new Maintenance(db, settings, () => now).prune()).to.include({ auditEvents: 1, complete: true });
    expect((await db.auditEvents.findAll({ order: [['at', 'ASC']] })).map((r) => r.username)).to.deep.equal(['almost', 'recent']);
  });
});

describe('AuditLog group commit', () => {
  let db: Database;
  let inserts: number;
  let failNext: boolean;
  /** The database as the log sees it, counting its INSERTs and failing the next one on demand. */
  let counted: Pick<Database, 'auditEvents' | 'insertRows'>;
  beforeEach(async () => {
    db = await openDatabase('sqlite::memory:');
    await migrateUp(db);
    inserts = 0;
    failNext = false;
    counted = {
      auditEvents: db.auditEvents,
      insertRows: (table, rows) => {
        inserts += 1;
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error('disk full (simulated)'));
        }
        return db.insertRows(table, rows);
      },
    };
  });
  afterEach(() => db.close());

  it('writes events recorded together in one INSERT, and each record resolves only once its row is stored', async () => {
    const log = new AuditLog(counted, Date.now);
    const stored: number[] = [];
    const writes = Array.from({ length: 30 }, (_, i) =>
      log.record('token_minted', { username: `burst${i}` }, `jti-${i}`).then(async () => {
        stored.push(await db.auditEvents.count({ where: { detail: `jti-${i}` } }));
      }),
    );
    await Promise.all(writes);
    expect(stored).to.have.length(30);
    expect(stored.every((n) => n === 1), 'every row readable when its record() resolved').to.equal(true);
    expect(inserts).to.equal(1);
  });

  it('events recorded while a write is in flight go together in the next one', async () => {
    const log = new AuditLog(counted, Date.now);
    const first = log.record('signed_in', { username: 'first' });
    await new Promise((r) => setImmediate(r)); // the first write has started
    const rest = Array.from({ length: 10 }, (_, i) => log.record('signed_in', { username: `waiting${i}` }));
    await Promise.all([first, ...rest]);
    expect(inserts).to.equal(2);
    expect(await db.auditEvents.count()).to.equal(11);
  });

  it('splits a long queue into INSERTs of at most MAX_BATCH_ROWS rows', async () => {
    const log = new AuditLog(counted, Date.now);
    const total = MAX_BATCH_ROWS * 2 + 1;
    await Promise.all(Array.from({ length: total }, (_, i) => log.record('signed_in', { username: `many${i}` })));
    expect(inserts).to.equal(3);
    expect(await db.auditEvents.count()).to.equal(total);
  });

  it('a failed write rejects the records of its batch only; the next batch is written', async () => {
    const log = new AuditLog(counted, Date.now);
    failNext = true;
    const failed = await Promise.allSettled([log.record('signed_in', { username: 'lost1' }), log.record('signed_in', { username: 'lost2' })]);
    expect(failed.map((r) => r.status)).to.deep.equal(['rejected', 'rejected']);
    await log.record('signed_in', { username: 'kept' });
    expect((await db.auditEvents.findAll()).map((r) => r.username)).to.deep.equal(['kept']);
  });

  it('rows read back through the model exactly: dates to the millisecond, text verbatim, nulls as nulls', async () => {
    const at = Date.parse('2031-02-03T04:05:06.789Z');
    const log = new AuditLog(db, () => at);
    const tricky = `it's "quoted"; DROP TABLE users; -- \u00e9\u{1F600}`;
    await log.record('sign_in_failed', { userId: null, username: tricky, ip: '::1', userAgent: null }, 'unknown account');
    const [row] = await db.auditEvents.findAll();
    expect(row!.at.getTime()).to.equal(at);
    expect(row!.username).to.equal(tricky);
    expect(row!.userId).to.equal(null);
    expect(row!.userAgent).to.equal(null);
    expect(await db.users.count(), 'the users table is still there').to.equal(0);
    expect(await db.auditEvents.count({ where: { at: new Date(at) } }), 'the ORM finds the row by its date').to.equal(1);
  });
});
