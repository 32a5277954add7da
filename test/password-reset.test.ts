import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { Writable } from 'node:stream';
import { QueryTypes } from 'sequelize';
import request from 'supertest';
import { createApp } from '../app.js';
import { createLogger } from '../middleware/request-log.js';
import { AuditLog } from '../services/audit-log.js';
import { PasswordResetService, RESET_LINK_LIFETIME_MS } from '../services/password-reset.js';
import { verifyPassword } from '../services/passwords.js';
import { RevocationService } from '../services/revocation.js';
import { SessionService } from '../services/sessions.js';
import { UserAdmin } from '../services/user-admin.js';
import { UserService } from '../services/users.js';
import { freshDatabase, startTestApp, type TestApp } from './helpers/app.js';
import { browser, csrfFrom, loginUser, registerUser, STRONG_PASSWORD, uniqueName, type Agent } from './helpers/browser.js';
import { runUsersCli } from './helpers/cli.js';
import { TestClock } from './helpers/clock.js';

const PUBLIC_URL = 'https://accounts.example.test:8443';
const NEW_PASSWORD = 'a fresh passphrase after the reset 58';
const LINK = /^\/auth\/reset\/[A-Za-z0-9_-]{43}$/;

/** The path of a reset URL, checked to be one of ours. */
function pathOf(url: string): string {
  const parsed = new URL(url);
  expect(parsed.origin).to.equal(PUBLIC_URL);
  expect(parsed.pathname).to.match(LINK);
  return parsed.pathname;
}

function tokenOf(path: string): string {
  return path.slice('/auth/reset/'.length);
}

describe('password reset links (npm run users -- reset-link, /auth/reset/:token)', function () {
  // The CLI tests start `node --import tsx` processes; the rest hash with argon2.
  this.timeout(60_000);

  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let t: TestApp;
  let clock: TestClock;
  /** Makes links with the app's clock, as the CLI would at that moment. */
  let resets: PasswordResetService;

  before(async () => {
    // A database the CLI's own process can open too: a SQLite file, or PostgreSQL with TEST_DATABASE_URL.
    db = await freshDatabase();
    clock = new TestClock();
    t = await startTestApp({ databaseUrl: db.url, clock: clock.read, env: { PUBLIC_URL } });
    const users = new UserService(t.database.users, clock.read);
    const audit = new AuditLog(t.database, clock.read);
    const sessions = new SessionService(t.database.sessions, t.database.sessionRevocations, 7 * 3600_000, clock.read);
    const revocation = new RevocationService({ sessions, users, admin: new UserAdmin(t.database.users, clock.read), audit });
    resets = new PasswordResetService({ resets: t.database.passwordResets, users, revocation, audit, clock: clock.read, publicUrl: t.config.publicUrl });
  });
  after(async () => {
    await t?.close();
    await db?.cleanup();
  });

  const cli = (args: string[], env?: Record<string, string>) => runUsersCli(args, { databaseUrl: db.url, env: { PUBLIC_URL, ...env } });

  /** A registered user (signed in in the returned browser). */
  async function newUser(prefix = 'reset'): Promise<{ username: string; agent: Agent }> {
    const agent = browser(t.server);
    const username = await registerUser(agent, uniqueName(prefix));
    return { username, agent };
  }

  async function linkFor(username: string): Promise<string> {
    return pathOf((await resets.createLink(username, { ip: null, userAgent: 'test' })).url);
  }

  /** Opens the form in a fresh browser and submits it. */
  async function submit(path: string, newPassword: string, confirmPassword = newPassword, agent = browser(t.server)) {
    const form = await agent.get(path).expect(200);
    return agent.post(path).type('form').send({ _csrf: csrfFrom(form.text), newPassword, confirmPassword });
  }

  async function storedHash(username: string): Promise<string> {
    return (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!.passwordHash;
  }

  describe('the CLI', () => {
    it('prints one line on stdout: a URL built from PUBLIC_URL that opens the form', async () => {
      const { username } = await newUser();
      const r = await cli(['reset-link', username]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/^[^\n]+\n$/);
      const path = pathOf(r.stdout.trim());
      expect(r.stderr).to.contain('30 minutes');
      const page = await browser(t.server).get(path).expect(200);
      expect(page.text).to.contain(username);
    });

    it('defaults to http://localhost:PORT without PUBLIC_URL', async () => {
      const { username } = await newUser();
      const r = await runUsersCli(['reset-link', username], { databaseUrl: db.url, env: { PORT: '4321' } });
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/^http:\/\/localhost:4321\/auth\/reset\/[A-Za-z0-9_-]{43}\n$/);
    });

    it('refuses an unknown or disabled user and a bad PUBLIC_URL with one line, exit 1, printing no link', async () => {
      const unknown = await cli(['reset-link', uniqueName('nobody')]);
      expect(unknown.code).to.equal(1);
      expect(unknown.stdout).to.equal('');
      expect(unknown.stderr).to.match(/^error: no user named "[^"]+"\n$/);

      const { username } = await newUser();
      expect((await cli(['disable', username])).code).to.equal(0);
      const disabled = await cli(['reset-link', username]);
      expect(disabled.code).to.equal(1);
      expect(disabled.stdout).to.equal('');
      expect(disabled.stderr).to.match(/^error: user "[^"]+" is disabled: enable the account first\n$/);

      const badUrl = await cli(['reset-link', username], { PUBLIC_URL: 'https://example.test/some/path' });
      expect(badUrl.code).to.equal(1);
      expect(badUrl.stdout).to.equal('');
      expect(badUrl.stderr).to.match(/^error: PUBLIC_URL: [^\n]+\n$/);
      expect(await t.database.passwordResets.count({ where: { userId: (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!.id } })).to.equal(0);
    });

    it('lists reset-link in its usage and wants exactly one username', async () => {
      const usage = await cli(['--help']);
      expect(usage.stdout).to.contain('reset-link <username>');
      const wrong = await cli(['reset-link']);
      expect(wrong.code).to.equal(2);
      expect((await cli(['reset-link', 'a', 'b'])).code).to.equal(2);
    });

    it('records password_reset_link_created for the user, by the CLI', async () => {
      const { username } = await newUser();
      const r = await cli(['reset-link', username]);
      expect(r.code, r.stderr).to.equal(0);
      const user = await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } });
      const rows = await t.database.auditEvents.findAll({ where: { userId: user!.id, event: 'password_reset_link_created' } });
      expect(rows.map((row) => [row.username, row.userAgent, row.ip])).to.deep.equal([[username, 'users-cli', null]]);
      expect(rows[0]!.detail).to.not.contain(tokenOf(pathOf(r.stdout.trim())));
    });
  });

  describe('the form', () => {
    it('has newPassword, confirmPassword and _csrf, new-password autocompletion and the policy hint, and sends no referrer', async () => {
      const { username } = await newUser();
      const path = await linkFor(username);
      const page = await browser(t.server).get(path).expect(200).expect('Content-Type', /html/);
      expect(page.headers['referrer-policy']).to.equal('no-referrer');
      expect(page.headers['cache-control']).to.contain('no-store');
      expect(page.text).to.match(/<form method="post" action="\/auth\/reset\/[A-Za-z0-9_-]{43}"/);
      expect(csrfFrom(page.text)).to.be.a('string');
      expect(page.text).to.match(/<input id="newPassword" name="newPassword" type="password" autocomplete="new-password"/);
      expect(page.text).to.match(/<input id="confirmPassword" name="confirmPassword" type="password" autocomplete="new-password"/);
      expect(page.text).to.contain('not one of the most common passwords');
      expect(page.text).to.contain('12 to 128 characters long');
    });

    it('refuses a submission without _csrf (403) and leaves the link usable', async () => {
      const { username } = await newUser();
      const path = await linkFor(username);
      const agent = browser(t.server);
      await agent.get(path).expect(200);
      await agent.post(path).type('form').send({ newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD }).expect(403);
      expect(await verifyPassword(await storedHash(username), STRONG_PASSWORD)).to.equal(true);
      expect((await submit(path, NEW_PASSWORD)).status).to.equal(303);
    });
  });

  describe('a reset', () => {
    it('works once: 303 to the sign-in page with a notice flag, then the link answers 404', async () => {
      const { username } = await newUser();
      const path = await linkFor(username);
      const res = await submit(path, NEW_PASSWORD);
      expect(res.status, res.text).to.equal(303);
      expect(res.headers.location).to.equal('/auth/login?reset=1');
      expect((await browser(t.server).get('/auth/login?reset=1').expect(200)).text).to.include('Your password was changed and you were signed out everywhere.');
      expect((await browser(t.server).get('/auth/login').expect(200)).text).to.not.include('you were signed out everywhere');
      await browser(t.server).get(path).expect(404);
      const again = browser(t.server);
      const form = await again.get('/auth/login').expect(200);
      await again.post(path).type('form').send({ _csrf: csrfFrom(form.text), newPassword: 'yet another passphrase 77', confirmPassword: 'yet another passphrase 77' }).expect(404);
      expect(await verifyPassword(await storedHash(username), NEW_PASSWORD)).to.equal(true);
    });

    it('keeps the link usable after a weak or mismatched password (400, field errors, nothing changed)', async () => {
      // A name long enough to be tried as a password.
      const { username } = await newUser('reset-long-name-');
      const path = await linkFor(username);
      const agent = browser(t.server);

      const weak = await submit(path, 'password1234', 'password1234', agent);
      expect(weak.status).to.equal(400);
      expect(weak.text).to.contain('most common ones');
      expect(weak.text).to.contain('id="new-error"');
      expect(weak.text).to.contain('name="newPassword"');

      const short = await submit(path, 'short', 'short', agent);
      expect(short.status).to.equal(400);
      expect(short.text).to.contain('Use at least 12 characters.');

      const own = await submit(path, username, username, agent);
      expect(own.status).to.equal(400);
      expect(own.text).to.contain('The password must not be your username.');

      const mismatch = await submit(path, NEW_PASSWORD, `${NEW_PASSWORD}!`, agent);
      expect(mismatch.status).to.equal(400);
      expect(mismatch.text).to.contain('The two passwords do not match.');
      expect(mismatch.text).to.contain('id="confirm-error"');

      expect(await verifyPassword(await storedHash(username), STRONG_PASSWORD)).to.equal(true);
      expect(await t.database.passwordResets.count({ where: { usedAt: null, tokenHash: createHash('sha256').update(tokenOf(path)).digest('hex') } })).to.equal(1);
      expect((await submit(path, NEW_PASSWORD, NEW_PASSWORD, agent)).status).to.equal(303);
    });

    it('ends every session and every earlier token of the user; the new password signs in, the old one does not', async () => {
      const { username, agent: first } = await newUser();
      const second = browser(t.server);
      expect((await loginUser(second, username)).status).to.equal(302);
      const tokens = await Promise.all([first, second].map(async (a) => ((await a.get('/auth/token').expect(200)).body as { token: string }).token));
      for (const token of tokens) await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);

      // The reset itself happens in the first browser: its own session ends too.
      const res = await submit(await linkFor(username), NEW_PASSWORD, NEW_PASSWORD, first);
      expect(res.status, res.text).to.equal(303);

      for (const a of [first, second]) {
        await a.get('/auth/token').expect(401);
        const account = await a.get('/account').expect(302);
        expect(account.headers.location).to.match(/^\/auth\/login\?returnTo=/);
      }
      for (const token of tokens) await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(401);
      expect(await t.database.sessions.count({ where: { userId: (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!.id } })).to.equal(0);

      const old = await loginUser(browser(t.server), username, STRONG_PASSWORD);
      expect(old.status).to.equal(401);
      const fresh = browser(t.server);
      expect((await loginUser(fresh, username, NEW_PASSWORD)).status).to.equal(302);
      const token = ((await fresh.get('/auth/token').expect(200)).body as { token: string }).token;
      await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
    });

    it('also refuses a token whose session is already gone (only "tokens valid after" can end it)', async () => {
      const { username, agent } = await newUser();
      const token = ((await agent.get('/auth/token').expect(200)).body as { token: string }).token;
      // As the maintenance pass does for a session that timed out: its tokens keep their lifetime.
      await t.database.sessions.destroy({ where: { userId: (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!.id } });
      await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
      // A token minted in this second would survive the whole-second "valid after" (README, Revocation).
      clock.advance(1000);
      expect((await submit(await linkFor(username), NEW_PASSWORD)).status).to.equal(303);
      await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(401);
    });

    it('leaves two-factor authentication as it is', async () => {
      const { username } = await newUser();
      const userId = (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!.id;
      const now = new Date(clock.read());
      await t.database.totpCredentials.create({ userId, secret: 'ciphertext-stand-in', createdAt: now, enabledAt: now, lastStep: 123 });
      await t.database.recoveryCodes.create({ userId, codeHash: 'a'.repeat(64), createdAt: now, usedAt: null });
      const before = JSON.stringify([await t.database.totpCredentials.findAll({ where: { userId } }), await t.database.recoveryCodes.findAll({ where: { userId } })]);

      expect((await submit(await linkFor(username), NEW_PASSWORD)).status).to.equal(303);

      const after = JSON.stringify([await t.database.totpCredentials.findAll({ where: { userId } }), await t.database.recoveryCodes.findAll({ where: { userId } })]);
      expect(after).to.equal(before);
    });

    it('records password_reset with the address of the request', async () => {
      const { username } = await newUser();
      const path = await linkFor(username);
      const agent = browser(t.server);
      const form = await agent.get(path).expect(200);
      await agent.post(path).set('User-Agent', 'reset-browser/1.0').type('form')
        .send({ _csrf: csrfFrom(form.text), newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD }).expect(303);
      const userId = (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!.id;
      const rows = await t.database.auditEvents.findAll({ where: { userId, event: ['password_reset_link_created', 'password_reset'] }, order: [['id', 'ASC']] });
      expect(rows.map((r) => r.event)).to.deep.equal(['password_reset_link_created', 'password_reset']);
      expect(rows[1]!.username).to.equal(username);
      expect(rows[1]!.userAgent).to.equal('reset-browser/1.0');
      expect(rows[1]!.ip).to.be.a('string').and.not.equal('');
      for (const row of rows) expect(String(row.detail)).to.not.contain(tokenOf(path));
    });

    it('lets only one of several concurrent submissions of one link win', async () => {
      const { username } = await newUser();
      const path = await linkFor(username);
      const passwords = [0, 1, 2, 3].map((i) => `concurrent passphrase number ${i} 31`);
      const forms = await Promise.all(passwords.map(async () => {
        const agent = browser(t.server);
        return { agent, csrf: csrfFrom((await agent.get(path).expect(200)).text) };
      }));
      const results = await Promise.all(forms.map(({ agent, csrf }, i) =>
        agent.post(path).type('form').send({ _csrf: csrf, newPassword: passwords[i], confirmPassword: passwords[i] })));
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 303), statuses.join()).to.have.length(1);
      expect(statuses.filter((s) => s === 404), statuses.join()).to.have.length(passwords.length - 1);
      const winner = passwords[statuses.indexOf(303)]!;
      const hash = await storedHash(username);
      for (const p of passwords) expect(await verifyPassword(hash, p), p).to.equal(p === winner);
      expect(await t.database.auditEvents.count({ where: { event: 'password_reset', username } })).to.equal(1);
    });

    it('uses up the user\'s other open links too', async () => {
      const { username } = await newUser();
      const [first, second] = [await linkFor(username), await linkFor(username)];
      expect((await submit(first!, NEW_PASSWORD)).status).to.equal(303);
      await browser(t.server).get(second!).expect(404);
    });
  });

  describe('links that do not work', () => {
    it('answer an unknown, a used and an expired link with the same 404 page', async () => {
      const unknown = `/auth/reset/${randomBytes(32).toString('base64url')}`;
      const { username } = await newUser();
      const expiring = await linkFor(username);
      clock.advance(RESET_LINK_LIFETIME_MS - 1000);
      await browser(t.server).get(expiring).expect(200);
      // Used, but made only now: it has not expired.
      const used = await linkFor((await newUser()).username);
      expect((await submit(used, NEW_PASSWORD)).status).to.equal(303);
      clock.advance(2000);

      const pages = await Promise.all([unknown, used, expiring, '/auth/reset/not-a-token'].map((p) => browser(t.server).get(p)));
      for (const page of pages) {
        expect(page.status).to.equal(404);
        expect(page.text).to.contain('invalid or has expired');
        expect(page.text).to.contain('Ask an administrator for a new one');
        expect(page.text).to.not.contain('name="newPassword"');
      }
      expect(new Set(pages.map((p) => p.text)).size).to.equal(1);
    });

    it('refuses an expired link on submission too and changes nothing', async () => {
      const { username } = await newUser();
      const path = await linkFor(username);
      const agent = browser(t.server);
      const form = await agent.get(path).expect(200);
      clock.advance(RESET_LINK_LIFETIME_MS + 1000);
      await agent.post(path).type('form').send({ _csrf: csrfFrom(form.text), newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD }).expect(404);
      expect(await verifyPassword(await storedHash(username), STRONG_PASSWORD)).to.equal(true);
    });

    it('stops working when the account is disabled', async () => {
      const { username } = await newUser();
      const path = await linkFor(username);
      await t.database.users.update({ disabled: true }, { where: { usernameKey: username.toLowerCase() } });
      await browser(t.server).get(path).expect(404);
    });
  });

  it('keeps no token in clear anywhere in the database, only its SHA-256', async () => {
    const { username } = await newUser();
    const link = await cli(['reset-link', username]);
    expect(link.code, link.stderr).to.equal(0);
    const token = tokenOf(pathOf(link.stdout.trim()));
    const user = await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } });
    const rows = await t.database.passwordResets.findAll({ where: { userId: user!.id } });
    expect(rows.map((r) => r.tokenHash)).to.deep.equal([createHash('sha256').update(token).digest('hex')]);

    // Every table, before and after the link is used.
    const everything = async () => {
      const tables = (await t.database.sequelize.getQueryInterface().showAllTables()).map((x) => (typeof x === 'string' ? x : (x as { tableName: string }).tableName));
      expect(tables).to.include('password_resets');
      const dumps = await Promise.all(tables.map((table) => t.database.sequelize.query(`SELECT * FROM "${table}"`, { type: QueryTypes.SELECT })));
      return JSON.stringify(dumps);
    };
    expect(await everything()).to.not.contain(token);
    expect((await submit(`/auth/reset/${token}`, NEW_PASSWORD)).status).to.equal(303);
    expect(await everything()).to.not.contain(token);
  });

  it('writes /auth/reset/:token in the request log, never the token', async () => {
    let text = '';
    const capture = new Writable({
      write(chunk: Buffer, _encoding, done) {
        text += chunk.toString('utf8');
        done();
      },
    });
    const logged = createServer(createApp({ config: t.config, database: t.database, logger: createLogger('info', capture), clock: clock.read }));
    const { username } = await newUser();
    const path = await linkFor(username);
    const token = tokenOf(path);
    const agent = request.agent(logged);
    const form = await agent.get(path).expect(200);
    await agent.get(`/AUTH/Reset/${token}?x=1`).expect(200);
    await agent.post(path).type('form').send({ _csrf: csrfFrom(form.text), newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD }).expect(303);
    await agent.get(`${path}/`).expect(404);
    await new Promise((r) => setImmediate(r));

    const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { req?: { method: string; path: string } });
    const requests = lines.filter((l) => l.req).map((l) => `${l.req!.method} ${l.req!.path}`);
    expect(requests).to.deep.equal(['GET /auth/reset/:token', 'GET /AUTH/Reset/:token', 'POST /auth/reset/:token', 'GET /auth/reset/:token/']);
    expect(text).to.not.contain(token);
  });
});
