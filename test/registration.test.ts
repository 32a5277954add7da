import { expect } from 'chai';
import request from 'supertest';
import { Op } from 'sequelize';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../services/passwords.js';
import { startTestApp, tempSqliteUrl, type TestApp } from './helpers/app.js';
import { browser, csrfFrom, formToken, loginUser, registerUser, STRONG_PASSWORD, uniqueName, type Agent } from './helpers/browser.js';

async function postRegister(agent: Agent, fields: { username: string; password: string; confirmPassword?: string; returnTo?: string }) {
  const _csrf = await formToken(agent, '/auth/register');
  return agent.post('/auth/register').type('form').send({ _csrf, confirmPassword: fields.password, ...fields });
}

async function isSignedIn(agent: Agent): Promise<boolean> {
  const res = await agent.get('/auth/token');
  expect(res.status).to.be.oneOf([200, 401]);
  return res.status === 200;
}

/** The text of the field error shown under one input, or undefined. */
function fieldError(html: string, field: 'username' | 'password' | 'confirm'): string | undefined {
  return new RegExp(`<p class="field-error" id="${field}-error">([^<]*)</p>`).exec(html)?.[1];
}

/** The value the username input is re-rendered with (still HTML-escaped). */
function typedUsername(html: string): string | undefined {
  return /<input id="username" name="username" type="text" value="([^"]*)"/.exec(html)?.[1];
}

function accountsNamed(t: TestApp, username: string): Promise<number> {
  return t.database.users.count({ where: { usernameKey: username.toLowerCase() } });
}

describe('registration', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('shows a form with username, password, confirmPassword and a hidden _csrf', async () => {
    const res = await request(t.server).get('/auth/register').expect(200);
    expect(res.text).to.match(/<form method="post" action="\/auth\/register"/);
    for (const name of ['username', 'password', 'confirmPassword']) expect(res.text).to.contain(`name="${name}"`);
    expect(csrfFrom(res.text)).to.match(/^[0-9a-f]{32,}$/);
  });

  it('creates the account, signs the browser in and redirects 302 to /', async () => {
    const agent = browser(t.server);
    const username = uniqueName('new');
    const res = await postRegister(agent, { username, password: STRONG_PASSWORD });
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/');
    expect(await isSignedIn(agent)).to.equal(true);
    expect(await accountsNamed(t, username)).to.equal(1);
    const other = browser(t.server);
    expect((await loginUser(other, username)).status).to.equal(302);
  });

  it('redirects to a same-origin returnTo after registering', async () => {
    const agent = browser(t.server);
    const page = await agent.get('/auth/register?returnTo=%2Ftoken').expect(200);
    expect(page.text).to.contain('name="returnTo" value="/token"');
    const res = await agent
      .post('/auth/register')
      .type('form')
      .send({ _csrf: csrfFrom(page.text), username: uniqueName('ret'), password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD, returnTo: '/token' });
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/token');
  });

  it('never stores the password in clear: an argon2id hash', async () => {
    const username = await registerUser(browser(t.server), uniqueName('hash'));
    const row = await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } });
    expect(row!.passwordHash).to.match(/^\$argon2id\$/);
    expect(row!.passwordHash).not.to.contain(STRONG_PASSWORD);
  });

  it('refuses a registration without _csrf with 403 and creates nothing', async () => {
    const agent = browser(t.server);
    await agent.get('/auth/register').expect(200);
    const username = uniqueName('nocsrf');
    const res = await agent.post('/auth/register').type('form').send({ username, password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD });
    expect(res.status).to.equal(403);
    expect(await accountsNamed(t, username)).to.equal(0);
  });

  it('re-renders a taken name with a field error and the typed username, signed out', async () => {
    const username = await registerUser(browser(t.server), uniqueName('taken'));
    const agent = browser(t.server);
    const res = await postRegister(agent, { username, password: STRONG_PASSWORD });
    expect(res.status).to.be.within(400, 499);
    expect(fieldError(res.text, 'username')).to.equal('This username is taken.');
    expect(typedUsername(res.text)).to.equal(username);
    expect(await isSignedIn(agent)).to.equal(false);
    expect(await accountsNamed(t, username)).to.equal(1);
  });

  it('treats the same name in another case as taken', async () => {
    const username = await registerUser(browser(t.server), uniqueName('Case'));
    const shouted = username.toUpperCase();
    const res = await postRegister(browser(t.server), { username: shouted, password: STRONG_PASSWORD });
    expect(res.status).to.be.within(400, 499);
    expect(fieldError(res.text, 'username')).to.equal('This username is taken.');
    expect(typedUsername(res.text)).to.equal(shouted);
    expect(await t.database.users.count({ where: { username: { [Op.in]: [username, shouted] } } })).to.equal(1);
  });

  it('treats a name that differs only by surrounding spaces or Unicode compatibility form as taken', async () => {
    const username = await registerUser(browser(t.server), uniqueName('norm'));
    // U+FF4E FULLWIDTH LATIN SMALL LETTER N normalises (NFKC) to "n".
    const lookalike = ` ${username.replace('n', '\uFF4E')} `;
    const res = await postRegister(browser(t.server), { username: lookalike, password: STRONG_PASSWORD });
    expect(res.status).to.be.within(400, 499);
    expect(fieldError(res.text, 'username')).to.equal('This username is taken.');
  });

  const weak: Array<[string, (username: string) => string, RegExp]> = [
    [`${PASSWORD_MIN_LENGTH - 1} characters`, () => 'Zq9-'.repeat(3).slice(0, PASSWORD_MIN_LENGTH - 1), /at least 12/],
    [`${PASSWORD_MAX_LENGTH + 1} characters`, () => 'Zq9-'.repeat(33).slice(0, PASSWORD_MAX_LENGTH + 1), /at most 128/],
    ['a common password (password1234)', () => 'password1234', /common/],
    ['a common password in other case (PassWord1234)', () => 'PassWord1234', /common/],
    ['a common keyboard walk (qwerty123456)', () => 'qwerty123456', /common/],
    ['the username itself', (username) => username, /username/],
    ['the username in another case', (username) => username.toUpperCase(), /username/],
  ];

  for (const [label, makePassword, message] of weak) {
    it(`refuses a password of ${label} with a field error, keeping the typed username`, async () => {
      const agent = browser(t.server);
      const username = uniqueName('weakpasswordcheck');
      const password = makePassword(username);
      const res = await postRegister(agent, { username, password });
      expect(res.status).to.equal(400);
      expect(fieldError(res.text, 'password')).to.match(message);
      expect(typedUsername(res.text)).to.equal(username);
      expect(res.text, 'password inputs are never re-filled').not.to.match(/type="password"[^>]*\svalue=/);
      expect(await isSignedIn(agent)).to.equal(false);
      expect(await accountsNamed(t, username)).to.equal(0);
    });
  }

  it('counts password length in characters, not bytes: 12 emoji are enough, 129 are too many', async () => {
    const ok = await postRegister(browser(t.server), { username: uniqueName('emoji'), password: '🔑🐢🌵🎈🧲🪁🦉🍋🚲🧩🎻🪐' });
    expect(ok.status).to.equal(302);
    const long = await postRegister(browser(t.server), { username: uniqueName('emoji'), password: '🔑'.repeat(129) });
    expect(long.status).to.equal(400);
    expect(fieldError(long.text, 'password')).to.match(/at most 128/);
  });

  it('refuses a mismatched confirmation with a field error, keeping the typed username', async () => {
    const agent = browser(t.server);
    const username = uniqueName('mismatch');
    const res = await postRegister(agent, { username, password: STRONG_PASSWORD, confirmPassword: `${STRONG_PASSWORD}!` });
    expect(res.status).to.equal(400);
    expect(fieldError(res.text, 'confirm')).to.match(/do not match/);
    expect(typedUsername(res.text)).to.equal(username);
    expect(await accountsNamed(t, username)).to.equal(0);
  });

  for (const [label, username] of [
    ['too short', 'ab'],
    ['too long', 'u'.repeat(65)],
    ['with a control character', 'bad\u0000name'],
    ['with an invisible format character', 'bad\u200Bname'],
    ['only spaces', '      '],
  ] as const) {
    it(`refuses a username ${label} with a field error`, async () => {
      const before = await t.database.users.count();
      const res = await postRegister(browser(t.server), { username, password: STRONG_PASSWORD });
      expect(res.status).to.equal(400);
      expect(fieldError(res.text, 'username')).to.be.a('string');
      expect(await t.database.users.count()).to.equal(before);
    });
  }

  it('refuses a name whose lower-cased lookup key would not fit the 64-character column', async () => {
    // U+0130 lower-cases to two code points: 64 of them would make a 128-character key
    // (a 500 on PostgreSQL's varchar(64), a silently over-long key on SQLite).
    const username = '\u0130'.repeat(64);
    const res = await postRegister(browser(t.server), { username, password: STRONG_PASSWORD });
    expect(res.status).to.equal(400);
    expect(fieldError(res.text, 'username')).to.be.a('string');
    expect(await t.database.users.count({ where: { username } })).to.equal(0);
  });

  it('accepts a 64-character name of letters that lower-case one to one', async () => {
    const username = `\u00C9${uniqueName('e').padEnd(63, 'E')}`;
    expect([...username]).to.have.length(64);
    const res = await postRegister(browser(t.server), { username, password: STRONG_PASSWORD });
    expect(res.status).to.equal(302);
    expect(await accountsNamed(t, username)).to.equal(1);
  });
});

describe('HTML in a username is escaped everywhere', () => {
  const NASTY = '<script>alert(1)</script>x';
  const ESCAPED = '&lt;script&gt;alert(1)&lt;/script&gt;x';
  let t: TestApp;
  let agent: Agent;
  before(async () => {
    t = await startTestApp();
    agent = browser(t.server);
    await registerUser(agent, NASTY);
  });
  after(() => t.close());

  function expectEscaped(html: string) {
    expect(html).not.to.contain('<script>alert(1)');
    expect(html).to.contain(ESCAPED);
  }

  it('on the home page', async () => {
    const res = await agent.get('/').expect(200);
    expectEscaped(res.text);
  });

  it('on the token page (header and decoded payload)', async () => {
    const res = await agent.get('/token').expect(200);
    expectEscaped(res.text);
    expect(res.text).not.to.contain('"username": "<script>');
  });

  it('on the error page of a signed-in user', async () => {
    const res = await agent.get('/no-such-page').expect(404);
    expectEscaped(res.text);
  });

  it('on the registration form re-rendered for the taken name', async () => {
    const res = await postRegister(browser(t.server), { username: NASTY, password: STRONG_PASSWORD });
    expect(res.status).to.be.within(400, 499);
    expectEscaped(res.text);
  });

  it('on the registration form re-rendered for a weak password', async () => {
    const res = await postRegister(browser(t.server), { username: `${NASTY}2`, password: 'short' });
    expect(res.status).to.equal(400);
    expectEscaped(res.text);
  });

  it('on the login form re-rendered after a wrong password', async () => {
    const res = await loginUser(browser(t.server), NASTY, 'not the right password at all');
    expect(res.status).to.equal(401);
    expectEscaped(res.text);
  });

  it('in an attribute-breaking name typed into the login form', async () => {
    const res = await loginUser(browser(t.server), '"><img src=x onerror=alert(1)>', 'not the right password at all');
    expect(res.status).to.equal(401);
    expect(res.text).not.to.contain('<img src=x');
    expect(res.text).to.contain('&#34;&gt;&lt;img src=x onerror=alert(1)&gt;');
  });
});

describe('registration under concurrency (SQLite file)', function () {
  this.timeout(120_000);
  let t: TestApp;
  let db: ReturnType<typeof tempSqliteUrl>;
  before(async () => {
    db = tempSqliteUrl();
    t = await startTestApp({ databaseUrl: db.url });
    // One listening server for all the parallel requests (supertest would otherwise open and close its own).
    await new Promise<void>((resolve) => t.server.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    t.server.closeAllConnections();
    await new Promise<void>((resolve) => t.server.close(() => resolve()));
    await t.close();
    db.cleanup();
  });

  it('registers 40 distinct users at once (all 302), then signs all 40 in at once (all 302)', async () => {
    const names = Array.from({ length: 40 }, () => uniqueName('crowd'));
    const registrations = await Promise.all(names.map((username) => postRegister(browser(t.server), { username, password: STRONG_PASSWORD })));
    expect(registrations.map((r) => r.status)).to.deep.equal(names.map(() => 302));
    expect(await t.database.users.count({ where: { usernameKey: names.map((n) => n.toLowerCase()) } })).to.equal(40);

    const agents = names.map(() => browser(t.server));
    const logins = await Promise.all(names.map((username, i) => loginUser(agents[i]!, username)));
    expect(logins.map((r) => r.status)).to.deep.equal(names.map(() => 302));
    const tokens = await Promise.all(agents.map((a) => a.get('/auth/token')));
    expect(tokens.map((r) => r.status)).to.deep.equal(names.map(() => 200));
  });

  it('creates exactly one account when 10 browsers register the same name at once', async () => {
    const username = uniqueName('race');
    const agents = Array.from({ length: 10 }, () => browser(t.server));
    const tokens = await Promise.all(agents.map((a) => formToken(a, '/auth/register')));
    const results = await Promise.all(
      agents.map((a, i) =>
        a.post('/auth/register').type('form').send({ _csrf: tokens[i], username, password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD }),
      ),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 302)).to.have.length(1);
    for (const res of results.filter((r) => r.status !== 302)) {
      expect(res.status).to.be.within(400, 499);
      expect(fieldError(res.text, 'username')).to.equal('This username is taken.');
    }
    expect(await accountsNamed(t, username)).to.equal(1);
  });
});
