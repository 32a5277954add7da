import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import { generate } from 'otplib';
import request from 'supertest';
import { freshDatabase, startTestApp, tempSqliteUrl, type TestApp } from './helpers/app.js';
import { browser, csrfFrom, registerUser, sessionCookie, STRONG_PASSWORD, uniqueName, type Agent } from './helpers/browser.js';
import { runKeysCli, runUsersCli } from './helpers/cli.js';
import { TestClock } from './helpers/clock.js';

const STEP_MS = 30_000;

/** The TOTP code of `secret` at `ms` (what an authenticator app would show then). */
function codeAt(secret: string, ms: number): Promise<string> {
  return generate({ secret, epoch: Math.floor(ms / 1000) });
}

/** The base32 secret the set-up page shows (in its `data-totp-secret` element). */
function secretFrom(html: string): string {
  const match = /data-totp-secret>([A-Z2-7]+)</.exec(html);
  if (!match) throw new Error('no data-totp-secret on the page');
  return match[1]!;
}

function recoveryCodesFrom(html: string): string[] {
  return [...html.matchAll(/data-recovery-code>([^<]+)</g)].map((m) => m[1]!);
}

async function csrf(agent: Agent, path: string): Promise<string> {
  return csrfFrom((await agent.get(path).expect(200)).text);
}

/**
 * Posts a form with the `_csrf` of the page at `formPage` (fetched first: a
 * supertest agent attaches its cookies when a request is created).
 */
async function submit(agent: Agent, path: string, fields: Record<string, string>, formPage = path) {
  const _csrf = await csrf(agent, formPage);
  return agent.post(path).type('form').send({ _csrf, ...fields });
}

/** A clock that starts in the middle of a 30 s time step, so "this step" and "the next" are unambiguous. */
function midStepClock(): TestClock {
  const now = Date.now();
  return new TestClock(now - (now % STEP_MS) + STEP_MS / 2);
}

interface Enrolled {
  agent: Agent;
  username: string;
  secret: string;
  recoveryCodes: string[];
}

describe('two-factor authentication (TOTP and recovery codes)', () => {
  const clock = midStepClock();
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ clock: clock.read });
  });
  after(() => t.close());

  /** Registers a user and turns two-factor on from the pages, with a code of the current step. */
  async function enrolled(): Promise<Enrolled> {
    const agent = browser(t.server);
    const username = await registerUser(agent, uniqueName('tf'));
    const page = await agent.get('/account/2fa').expect(200);
    const secret = secretFrom(page.text);
    const res = await agent
      .post('/account/2fa')
      .type('form')
      .send({ _csrf: csrfFrom(page.text), code: await codeAt(secret, clock.read()), currentPassword: STRONG_PASSWORD });
    expect(res.status, res.text).to.equal(200);
    // Each later code in these tests comes from a later step: the enrolment code's step is used up.
    clock.advance(STEP_MS);
    return { agent, username, secret, recoveryCodes: recoveryCodesFrom(res.text) };
  }

  /** Password step in a new browser: 302 to /auth/2fa, not signed in yet. */
  async function passwordStep(username: string, returnTo = '/'): Promise<Agent> {
    const agent = browser(t.server);
    const res = await submit(agent, '/auth/login', { username, password: STRONG_PASSWORD, returnTo });
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/auth/2fa');
    return agent;
  }

  async function secondStep(agent: Agent, form: Record<string, string>) {
    return submit(agent, '/auth/2fa', { ...form });
  }

  async function tokenOf(agent: Agent): Promise<string> {
    return ((await agent.get('/auth/token').expect(200)).body as { token: string }).token;
  }

  describe('set-up', () => {
    it('shows on /account whether it is on, with a link to set it up', async () => {
      const agent = browser(t.server);
      await registerUser(agent);
      const off = await agent.get('/account').expect(200);
      expect(off.text).to.match(/Off<\/span>/).and.include('href="/account/2fa"');
      const { agent: on } = await enrolled();
      expect((await on.get('/account').expect(200)).text).to.match(/On<\/span>/).and.match(/10 recovery codes left/);
    });

    it('shows a QR code drawn by the app and the secret as text, and keeps the secret only encrypted', async () => {
      const agent = browser(t.server);
      await registerUser(agent);
      const page = await agent.get('/account/2fa').expect(200);
      expect(page.text).to.match(/<figure class="qr"[^>]*><svg [^>]*viewBox/);
      expect(page.text).to.not.match(/<img[^>]+src="https?:/);
      const secret = secretFrom(page.text);
      expect(Buffer.from(secret, 'utf8')).to.have.length.of.at.least(26); // ≥ 128 bits of base32
      expect((await agent.get('/account/2fa').expect(200)).text, 'the same secret on a reload').to.include(secret);
      const rows = JSON.stringify(await t.database.sequelize.query('SELECT * FROM totp_credentials', { type: 'SELECT' }));
      expect(rows).to.not.include(secret);
    });

    it('changes nothing for a wrong code or a wrong password', async () => {
      const agent = browser(t.server);
      const username = await registerUser(agent);
      const page = await agent.get('/account/2fa').expect(200);
      const secret = secretFrom(page.text);
      const good = await codeAt(secret, clock.read());
      const wrong = good === '000000' ? '111111' : '000000';
      for (const form of [{ code: wrong, currentPassword: STRONG_PASSWORD }, { code: good, currentPassword: 'not my password at all' }, { code: '', currentPassword: STRONG_PASSWORD }]) {
        const res = await agent.post('/account/2fa').type('form').send({ _csrf: csrfFrom(page.text), ...form });
        expect(res.status, JSON.stringify(form)).to.equal(400);
        expect(recoveryCodesFrom(res.text)).to.deep.equal([]);
      }
      expect((await agent.get('/account').expect(200)).text).to.match(/Off<\/span>/);
      // Signing in still takes the password alone.
      const again = browser(t.server);
      const res = await submit(again, '/auth/login', { username, password: STRONG_PASSWORD });
      expect(res.headers.location, `${res.status} ${res.text.slice(0, 2000)}`).to.equal('/');
    });

    it('turns on with a code and the password, shows 10 distinct recovery codes once, and signs out the other sessions', async () => {
      const agent = browser(t.server);
      const username = await registerUser(agent);
      const other = browser(t.server);
      expect((await submit(other, '/auth/login', { username, password: STRONG_PASSWORD })).status).to.equal(302);
      const page = await agent.get('/account/2fa').expect(200);
      const res = await agent
        .post('/account/2fa')
        .type('form')
        .send({ _csrf: csrfFrom(page.text), code: await codeAt(secretFrom(page.text), clock.read()), currentPassword: STRONG_PASSWORD })
        .expect(200);
      clock.advance(STEP_MS);
      const codes = recoveryCodesFrom(res.text);
      expect(codes).to.have.length(10);
      expect(new Set(codes).size).to.equal(10);
      for (const code of codes) expect(code).to.match(/^[a-z2-7]{6}(-[a-z2-7]{6}){3}$/);
      expect(res.headers['cache-control']).to.equal('no-store');
      expect(res.text).to.include('download="token-bridge-recovery-codes.txt"');
      // Shown once: the settings page lists none, and the database has only hashes.
      expect(recoveryCodesFrom((await agent.get('/account/2fa').expect(200)).text)).to.deep.equal([]);
      const stored = JSON.stringify(await t.database.sequelize.query('SELECT * FROM recovery_codes', { type: 'SELECT' }));
      for (const code of codes) expect(stored).to.not.include(code).and.not.include(code.replace(/-/g, ''));
      // The other session is gone; this one goes on.
      expect((await other.get('/account')).status).to.equal(302);
      await agent.get('/account').expect(200);
    });
  });

  describe('the second step of sign-in', () => {
    it('after the right password gives nothing yet: no token, no account page, no token page', async () => {
      const { username } = await enrolled();
      const agent = await passwordStep(username);
      await agent.get('/auth/token').expect(401);
      expect((await agent.get('/account')).headers.location).to.match(/^\/auth\/login\?returnTo=/);
      expect((await agent.get('/token')).headers.location).to.match(/^\/auth\/login\?returnTo=/);
      const page = await agent.get('/auth/2fa').expect(200);
      expect(page.text).to.include('autocomplete="one-time-code"').and.include('inputmode="numeric"').and.include('href="/auth/2fa?method=recovery"');
    });

    it('refuses a wrong code with 401, the same page and one generic message', async () => {
      const { username, secret } = await enrolled();
      const agent = await passwordStep(username);
      const right = await codeAt(secret, clock.read());
      for (const code of [right === '123456' ? '654321' : '123456', 'abcdef', '12345', '1234567']) {
        const res = await secondStep(agent, { code });
        expect(res.status, code).to.equal(401);
        expect(res.headers['www-authenticate']).to.equal('Form realm="token-bridge"');
        expect(res.text).to.include('That code is not right.');
      }
      await agent.get('/auth/token').expect(401);
    });

    it('signs in with the right code under a new session id, to returnTo, with amr ["pwd","otp","mfa"]', async () => {
      const { username, secret } = await enrolled();
      const agent = await passwordStep(username, '/token');
      const before = sessionCookie(await agent.get('/auth/2fa'));
      const res = await secondStep(agent, { code: await codeAt(secret, clock.read()) });
      expect(res.status, res.text).to.equal(302);
      expect(res.headers.location).to.equal('/token');
      const after = sessionCookie(res);
      expect(after).to.be.a('string').and.not.equal(before);
      const claims = jwt.decode(await tokenOf(agent)) as { amr: string[] };
      expect(claims.amr).to.deep.equal(['pwd', 'otp', 'mfa']);
    });

    it('accepts a code once: the same code is refused in another session', async () => {
      const { username, secret } = await enrolled();
      const code = await codeAt(secret, clock.read());
      expect((await secondStep(await passwordStep(username), { code })).status).to.equal(302);
      expect((await secondStep(await passwordStep(username), { code })).status).to.equal(401);
    });

    it('lets exactly one of two sessions sending the same code at the same moment in', async () => {
      const { username, secret } = await enrolled();
      const [one, two] = [await passwordStep(username), await passwordStep(username)];
      const [csrfOne, csrfTwo] = [await csrf(one, '/auth/2fa'), await csrf(two, '/auth/2fa')];
      const code = await codeAt(secret, clock.read());
      const statuses = await Promise.all([
        one.post('/auth/2fa').type('form').send({ _csrf: csrfOne, code }),
        two.post('/auth/2fa').type('form').send({ _csrf: csrfTwo, code }),
      ]);
      expect(statuses.map((r) => r.status).sort()).to.deep.equal([302, 401]);
      clock.advance(STEP_MS);
    });

    it('accepts the code of the step before and after, and refuses older and newer ones', async () => {
      const { username, secret } = await enrolled();
      // Two steps past the enrolment code's, so the step before now is unused.
      clock.advance(STEP_MS);
      for (const [offset, status] of [[-2, 401], [+2, 401], [-1, 302]] as const) {
        const res = await secondStep(await passwordStep(username), { code: await codeAt(secret, clock.read() + offset * STEP_MS) });
        expect(res.status, `step ${offset}`).to.equal(status);
      }
      // The step before is used up now: the next step's code is still ahead of it.
      expect((await secondStep(await passwordStep(username), { code: await codeAt(secret, clock.read() + STEP_MS) })).status).to.equal(302);
      // ...and this step's code is behind the one just accepted: refused, no going back.
      expect((await secondStep(await passwordStep(username), { code: await codeAt(secret, clock.read()) })).status).to.equal(401);
      clock.advance(3 * STEP_MS);
    });

    it('takes a recovery code once instead of a code, and /account counts what is left', async () => {
      const { username, recoveryCodes } = await enrolled();
      const agent = await passwordStep(username);
      expect((await agent.get('/auth/2fa?method=recovery').expect(200)).text).to.include('name="recoveryCode"');
      // Typed with capitals and spaces instead of dashes: still the code.
      const typed = recoveryCodes[0]!.toUpperCase().replace(/-/g, ' ');
      expect((await secondStep(agent, { recoveryCode: typed })).status).to.equal(302);
      expect((jwt.decode(await tokenOf(agent)) as { amr: string[] }).amr).to.deep.equal(['pwd', 'otp', 'mfa']);
      expect((await agent.get('/account').expect(200)).text).to.match(/9 recovery codes left/);
      expect((await secondStep(await passwordStep(username), { recoveryCode: recoveryCodes[0]! })).status).to.equal(401);
      expect((await secondStep(await passwordStep(username), { recoveryCode: 'aaaaaa-bbbbbb-cccccc-dddddd' })).status).to.equal(401);
    });

    it('blocks the second step after five wrong codes in 15 minutes, the right code and other addresses included', async () => {
      const { username, secret } = await enrolled();
      const agent = await passwordStep(username);
      const right = await codeAt(secret, clock.read());
      const wrong = right === '000000' ? '999999' : '000000';
      for (let i = 0; i < 5; i += 1) expect((await secondStep(agent, { code: wrong })).status).to.equal(401);
      const blocked = await secondStep(agent, { code: right });
      expect(blocked.status).to.equal(429);
      expect(Number(blocked.headers['retry-after'])).to.be.within(1, 15 * 60);
      // The counter is the account's: a fresh browser (another session) is blocked too.
      expect((await secondStep(await passwordStep(username), { code: right })).status).to.equal(429);
      clock.advance(15 * 60_000 + 1000);
      expect((await secondStep(await passwordStep(username), { code: await codeAt(secret, clock.read()) })).status).to.equal(302);
      clock.advance(STEP_MS);
    });

    it('expires 5 minutes after the password: the code then sends the browser back to sign in', async () => {
      const { username, secret } = await enrolled();
      const agent = await passwordStep(username);
      const _csrf = await csrf(agent, '/auth/2fa');
      clock.advance(5 * 60_000 + 1000);
      const res = await agent.post('/auth/2fa').type('form').send({ _csrf, code: await codeAt(secret, clock.read()) });
      expect(res.status).to.equal(401);
      expect(res.text).to.include('That took too long: sign in again.');
      await agent.get('/auth/token').expect(401);
      expect((await agent.get('/auth/2fa')).headers.location).to.equal('/auth/login');
      clock.advance(STEP_MS);
    });
  });

  describe('managing it', () => {
    it('turns off with the password and a code; signing in then takes the password alone and the recovery codes are gone', async () => {
      const { agent, username, secret } = await enrolled();
      const refused = await submit(agent, '/account/2fa/disable', { currentPassword: 'wrong password here', code: await codeAt(secret, clock.read()) }, '/account/2fa');
      expect(refused.status).to.equal(400);
      const res = await submit(agent, '/account/2fa/disable', { currentPassword: STRONG_PASSWORD, code: await codeAt(secret, clock.read()) }, '/account/2fa');
      expect(res.status).to.equal(303);
      expect((await agent.get('/account').expect(200)).text).to.match(/Off<\/span>/);
      const again = browser(t.server);
      const login = await submit(again, '/auth/login', { username, password: STRONG_PASSWORD });
      expect(login.headers.location).to.equal('/');
      const user = await t.database.users.findOne({ where: { username } });
      expect(await t.database.recoveryCodes.count({ where: { userId: user!.id } })).to.equal(0);
      clock.advance(STEP_MS);
    });

    it('makes a new set of recovery codes on request; the old set stops working', async () => {
      const { agent, username, recoveryCodes } = await enrolled();
      const res = await submit(agent, '/account/2fa/recovery-codes', { currentPassword: STRONG_PASSWORD }, '/account/2fa');
      expect(res.status).to.equal(200);
      const fresh = recoveryCodesFrom(res.text);
      expect(fresh).to.have.length(10);
      expect((await secondStep(await passwordStep(username), { recoveryCode: recoveryCodes[1]! })).status).to.equal(401);
      expect((await secondStep(await passwordStep(username), { recoveryCode: fresh[1]! })).status).to.equal(302);
    });

    it('audits enabling, failed codes, recovery codes used and disabling', async () => {
      const { agent, username, secret, recoveryCodes } = await enrolled();
      await secondStep(await passwordStep(username), { code: '000000' === (await codeAt(secret, clock.read())) ? '111111' : '000000' });
      await secondStep(await passwordStep(username), { recoveryCode: recoveryCodes[2]! });
      expect((await submit(agent, '/account/2fa/disable', { currentPassword: STRONG_PASSWORD, recoveryCode: recoveryCodes[3]! }, '/account/2fa')).status).to.equal(303);
      const user = await t.database.users.findOne({ where: { username } });
      const events = (await t.database.auditEvents.findAll({ where: { userId: user!.id }, order: [['id', 'ASC']] })).map((e) => e.event);
      expect(events).to.include.members(['two_factor_enabled', 'second_factor_pending', 'second_factor_failed', 'recovery_code_used', 'two_factor_disabled']);
    });
  });
});

describe('a TOTP code is used once across instances', () => {
  const clock = midStepClock();
  let file: ReturnType<typeof tempSqliteUrl> | undefined;
  let a: TestApp;
  let b: TestApp;
  before(async () => {
    a = await startTestApp({ clock: clock.read, ...(process.env.TEST_DATABASE_URL ? {} : { databaseUrl: (file = tempSqliteUrl()).url }) });
    b = await startTestApp({ clock: clock.read, databaseUrl: a.config.databaseUrl });
  });
  after(async () => {
    await b.close();
    await a.close();
    file?.cleanup();
  });

  it('refuses on instance B the code just accepted on instance A', async () => {
    const agent = browser(a.server);
    const username = await registerUser(agent);
    const page = await agent.get('/account/2fa').expect(200);
    const secret = secretFrom(page.text);
    await agent.post('/account/2fa').type('form').send({ _csrf: csrfFrom(page.text), code: await codeAt(secret, clock.read()), currentPassword: STRONG_PASSWORD }).expect(200);
    clock.advance(STEP_MS);
    const code = await codeAt(secret, clock.read());
    const step = async (app: TestApp) => {
      const browserOn = request.agent(app.server);
      const login = await submit(browserOn, '/auth/login', { username, password: STRONG_PASSWORD });
      expect(login.headers.location).to.equal('/auth/2fa');
      return (await submit(browserOn, '/auth/2fa', { code })).status;
    };
    expect([await step(a), await step(b)]).to.deep.equal([302, 401]);
  });
});

describe('REQUIRE_2FA_ROLES', () => {
  const clock = midStepClock();
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ clock: clock.read, env: { REQUIRE_2FA_ROLES: 'admin' } });
  });
  after(() => t.close());

  it('sends an admin without two-factor to set it up, refuses their password-only token for admin routes (RFC 9470), and lets them through once it is on', async () => {
    const username = await registerUser(browser(t.server));
    await t.database.users.update({ roles: ['admin'] }, { where: { username } });
    const agent = browser(t.server);
    const login = await submit(agent, '/auth/login', { username, password: STRONG_PASSWORD });
    expect(login.headers.location).to.equal('/account/2fa');
    for (const path of ['/', '/account', '/token']) expect((await agent.get(path)).headers.location, path).to.equal('/account/2fa');

    const token = ((await agent.get('/auth/token').expect(200)).body as { token: string }).token;
    const refused = await request(t.server).get('/api/users').set('Authorization', `Bearer ${token}`).expect(403);
    expect(refused.headers['www-authenticate']).to.match(/error="insufficient_user_authentication"/);
    await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);

    const page = await agent.get('/account/2fa').expect(200);
    await agent
      .post('/account/2fa')
      .type('form')
      .send({ _csrf: csrfFrom(page.text), code: await codeAt(secretFrom(page.text), clock.read()), currentPassword: STRONG_PASSWORD })
      .expect(200);
    await agent.get('/account').expect(200);
    const stepped = ((await agent.get('/auth/token').expect(200)).body as { token: string }).token;
    expect((jwt.decode(stepped) as { amr: string[] }).amr).to.include('mfa');
    await request(t.server).get('/api/users').set('Authorization', `Bearer ${stepped}`).expect(200);
  });

  it('leaves holders of other roles alone', async () => {
    const username = await registerUser(browser(t.server));
    const agent = browser(t.server);
    const login = await submit(agent, '/auth/login', { username, password: STRONG_PASSWORD });
    expect(login.headers.location).to.equal('/');
    await agent.get('/account').expect(200);
  });
});

describe('TOTP secrets and a new JWT_SECRET_KEY', function () {
  this.timeout(60_000);
  const OLD = 'old-jwt-secret-for-totp-0123456789abcdefghijklmn';
  const NEW = 'new-jwt-secret-for-totp-9876543210zyxwvutsrqponm';
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  before(async () => {
    db = await freshDatabase();
  });
  after(() => db.cleanup());

  /** Signs in with the password and the current code on an app using `secret`; the second step's status. */
  async function secondStepWith(secretKey: string, username: string, totpSecret: string): Promise<number> {
    const t = await startTestApp({ databaseUrl: db.url, env: { JWT_SECRET_KEY: secretKey } });
    try {
      const agent = browser(t.server);
      const login = await submit(agent, '/auth/login', { username, password: STRONG_PASSWORD });
      expect(login.headers.location).to.equal('/auth/2fa');
      // The step after the enrolment code's (each code is accepted once; one step of tolerance).
      return (await submit(agent, '/auth/2fa', { code: await codeAt(totpSecret, enrolledAt + STEP_MS) })).status;
    } finally {
      await t.close();
    }
  }
  let enrolledAt = 0;

  it('answers 503 (never 500) when no entry opens a secret, and works again after `npm run keys -- reencrypt`', async () => {
    const t = await startTestApp({ databaseUrl: db.url, env: { JWT_SECRET_KEY: OLD } });
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const page = await agent.get('/account/2fa').expect(200);
    const totpSecret = secretFrom(page.text);
    enrolledAt = Date.now();
    await agent.post('/account/2fa').type('form').send({ _csrf: csrfFrom(page.text), code: await codeAt(totpSecret, enrolledAt), currentPassword: STRONG_PASSWORD }).expect(200);
    await t.close();

    expect(await secondStepWith(NEW, username, totpSecret)).to.equal(503);
    const cli = await runKeysCli(['reencrypt'], { databaseUrl: db.url, env: { JWT_SECRET_KEY: `${NEW},${OLD}` } });
    expect(cli.code, cli.stderr).to.equal(0);
    expect(cli.stdout).to.match(/and 1 two-factor secret\(s\)/);
    expect(await secondStepWith(NEW, username, totpSecret)).to.equal(302);
  });
});

describe('npm run users -- reset-2fa (a lost device)', function () {
  this.timeout(60_000);
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let t: TestApp;
  before(async () => {
    db = await freshDatabase();
    t = await startTestApp({ databaseUrl: db.url });
  });
  after(async () => {
    await t.close();
    await db.cleanup();
  });

  it('turns two-factor off so the password alone signs in, deletes the recovery codes, audits it, and says when there was nothing to do', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const page = await agent.get('/account/2fa').expect(200);
    await agent.post('/account/2fa').type('form').send({ _csrf: csrfFrom(page.text), code: await codeAt(secretFrom(page.text), Date.now()), currentPassword: STRONG_PASSWORD }).expect(200);
    expect((await submit(browser(t.server), '/auth/login', { username, password: STRONG_PASSWORD })).headers.location).to.equal('/auth/2fa');

    const reset = await runUsersCli(['reset-2fa', username], { databaseUrl: db.url });
    expect(reset.code, reset.stderr).to.equal(0);
    expect(reset.stdout).to.match(/two-factor authentication is off/);
    expect((await submit(browser(t.server), '/auth/login', { username, password: STRONG_PASSWORD })).headers.location).to.equal('/');
    const user = await t.database.users.findOne({ where: { username } });
    expect(await t.database.recoveryCodes.count({ where: { userId: user!.id } })).to.equal(0);
    expect(await t.database.auditEvents.count({ where: { userId: user!.id, event: 'two_factor_reset' } })).to.equal(1);

    const again = await runUsersCli(['reset-2fa', username], { databaseUrl: db.url });
    expect([again.code, again.stdout]).to.deep.equal([0, `${username}: two-factor authentication was off already (no change)\n`]);
    const unknown = await runUsersCli(['reset-2fa', 'nobody-here'], { databaseUrl: db.url });
    expect(unknown.code).to.equal(1);
    expect(unknown.stderr.trim().split('\n')).to.have.length(1);
  });
});
