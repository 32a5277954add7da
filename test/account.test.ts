import { expect } from 'chai';
import request from 'supertest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { browser, csrfFrom, formToken, loginUser, registerUser, STRONG_PASSWORD, type Agent } from './helpers/browser.js';

const NEW_PASSWORD = 'a brand new passphrase 77';

/** Reverses EJS's escaping of `<%= %>` output. */
function unescapeHtml(html: string): string {
  return html
    .replace(/&#34;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The rows of the table inside the section with this heading id. */
function tableRows(html: string, headingId: string): string[] {
  const section = new RegExp(`<section aria-labelledby="${headingId}">([\\s\\S]*?)</section>`).exec(html);
  expect(section, `section ${headingId}`).to.not.equal(null);
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(section![1]!);
  if (!body) return [];
  return body[1]!.match(/<tr\b[\s\S]*?<\/tr>/g) ?? [];
}

function cells(row: string): string[] {
  return [...row.matchAll(/<td\b[^>]*>([\s\S]*?)<\/td>/g)].map((m) => m[1]!.trim());
}

/** The readable browser in a user-agent cell (the summary, without its visually hidden hint). */
function summaryOf(cell: string): string | undefined {
  const summary = /<summary>([\s\S]*?)<\/summary>/.exec(cell)?.[1];
  return summary === undefined ? undefined : unescapeHtml(summary.replace(/<span class="visually-hidden">[\s\S]*?<\/span>/, '').trim());
}

/** The raw user agent inside a user-agent cell's disclosure. */
function rawUserAgentOf(cell: string): string | undefined {
  const raw = /<details>[\s\S]*<code class="ua-raw">([\s\S]*?)<\/code>[\s\S]*<\/details>/.exec(cell)?.[1];
  return raw === undefined ? undefined : unescapeHtml(raw);
}

function formsOn(html: string): string[] {
  return html.match(/<form\b[\s\S]*?<\/form>/g) ?? [];
}

async function isSignedIn(agent: Agent): Promise<boolean> {
  const res = await agent.get('/auth/token');
  expect(res.status).to.be.oneOf([200, 401]);
  return res.status === 200;
}

describe('account page', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { TRUST_PROXY: 'true' } });
  });
  after(() => t.close());

  it('sends a signed-out visitor to sign in and back to /account', async () => {
    const res = await request(t.server).get('/account');
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/auth/login?returnTo=%2Faccount');
  });

  it('comes back to /account after signing in from that redirect', async () => {
    const username = await registerUser(browser(t.server));
    const agent = browser(t.server);
    const login = await agent.get('/auth/login?returnTo=%2Faccount').expect(200);
    const res = await agent
      .post('/auth/login')
      .type('form')
      .send({ _csrf: csrfFrom(login.text), username, password: STRONG_PASSWORD, returnTo: '/account' });
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/account');
    await agent.get('/account').expect(200);
  });

  it('shows a change-password form with current, new and repeated password fields', async () => {
    const agent = browser(t.server);
    await registerUser(agent);
    const page = await agent.get('/account').expect(200).expect('Content-Type', /text\/html/);
    expect(page.headers['cache-control']).to.contain('no-store');
    const form = formsOn(page.text).find((f) => f.includes('action="/account/password"'));
    expect(form, 'password form').to.be.a('string');
    expect(form).to.match(/<form method="post" action="\/account\/password"/);
    for (const name of ['currentPassword', 'newPassword', 'confirmPassword']) {
      expect(form).to.match(new RegExp(`name="${name}" type="password"`));
    }
  });

  it('lists each session with created, last seen, address and user agent, and marks this browser', async () => {
    const mine = browser(t.server).set('User-Agent', 'MineBrowser/1.0 (<b>bold</b>)').set('X-Forwarded-For', '203.0.113.10');
    const username = await registerUser(mine);
    const phone = browser(t.server).set('User-Agent', 'PhoneBrowser/2.0').set('X-Forwarded-For', '198.51.100.20');
    expect((await loginUser(phone, username)).status).to.equal(302);

    const page = await mine.get('/account').expect(200);
    expect(page.text, 'user agents are escaped').to.not.contain('<b>bold</b>');
    const rows = tableRows(page.text, 'sessions-heading');
    expect(rows).to.have.length(2);
    const byAgent = (ua: string) => rows.find((r) => unescapeHtml(r).includes(ua))!;
    const mineRow = byAgent('MineBrowser/1.0 (<b>bold</b>)');
    const phoneRow = byAgent('PhoneBrowser/2.0');
    expect(mineRow, 'row of this browser').to.be.a('string');
    expect(phoneRow, 'row of the phone').to.be.a('string');

    const [created, lastSeen, ip, ua] = cells(mineRow);
    expect(created).to.match(/<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z">/);
    expect(Date.now() - Date.parse(/datetime="([^"]+)"/.exec(created!)![1]!)).to.be.within(0, 60_000);
    expect(lastSeen).to.match(/<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z">/);
    expect(ip).to.equal('203.0.113.10');
    expect(summaryOf(ua!)).to.equal('Unknown browser');
    expect(rawUserAgentOf(ua!)).to.equal('MineBrowser/1.0 (<b>bold</b>)');
    expect(cells(phoneRow)[2]).to.equal('198.51.100.20');

    expect(page.text.split('(this browser)')).to.have.length(2);
    expect(mineRow).to.contain('(this browser)');
    expect(phoneRow).to.not.contain('(this browser)');

    const phonePage = await phone.get('/account').expect(200);
    const phoneView = tableRows(phonePage.text, 'sessions-heading').find((r) => r.includes('(this browser)'))!;
    expect(phoneView).to.contain('PhoneBrowser/2.0');
  });

  it('shows an IPv4 client as 127.0.0.1 (not ::ffff:127.0.0.1) and a Chrome user agent as "Chrome 156 on Linux", the raw string on demand', async () => {
    const chrome = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36';
    // How a dual-stack server sees an IPv4 client. Sent as X-Forwarded-For (this app trusts it) so the
    // test does not depend on whether this machine's loopback connection arrives over IPv6.
    const agent = browser(t.server).set('User-Agent', chrome).set('X-Forwarded-For', '::ffff:127.0.0.1');
    await registerUser(agent);
    const stored = await t.database.sessions.findOne({ where: { userAgent: chrome } });
    expect(stored?.ip, 'the stored address is the IPv4-mapped form').to.equal('::ffff:127.0.0.1');

    const page = await agent.get('/account').expect(200);
    const rows = tableRows(page.text, 'sessions-heading');
    expect(rows).to.have.length(1);
    const [, , ip, ua] = cells(rows[0]!);
    expect(ip).to.equal('127.0.0.1');
    expect(summaryOf(ua!)).to.equal('Chrome 156 on Linux');
    expect(rawUserAgentOf(ua!)).to.equal(chrome);
    // A <details> disclosure: the raw string is one activation away, with no script.
    expect(ua).to.match(/^<details><summary>Chrome 156 on Linux<span class="visually-hidden">[^<]+<\/span><\/summary>/);
    expect(rows[0]).not.to.contain('::ffff:');
    const activity = tableRows(page.text, 'activity-heading');
    expect(activity.length).to.be.above(0);
    for (const row of activity) expect(cells(row)[2], row).to.equal('127.0.0.1');
  });

  it('shows a real IPv6 address as it is', async () => {
    const agent = browser(t.server).set('User-Agent', 'V6Browser/1.0').set('X-Forwarded-For', '2001:db8::7');
    await registerUser(agent);
    const rows = tableRows((await agent.get('/account').expect(200)).text, 'sessions-heading');
    expect(cells(rows[0]!)[2]).to.equal('2001:db8::7');
  });

  it('leaves out sessions past their idle or absolute lifetime even before their rows are swept', async () => {
    const mine = browser(t.server).set('User-Agent', 'StillHere/1.0');
    const username = await registerUser(mine);
    const idle = browser(t.server).set('User-Agent', 'WentIdle/1.0');
    const old = browser(t.server).set('User-Agent', 'TooOld/1.0');
    expect((await loginUser(idle, username)).status).to.equal(302);
    expect((await loginUser(old, username)).status).to.equal(302);
    const { idleTimeoutMs, absoluteTimeoutMs } = t.config.session;
    // As if they had been left alone: the stored session data is what the store and the list judge by.
    const age = async (userAgent: string, change: (meta: { createdAt: number; lastSeenAt: number }) => void) => {
      const row = (await t.database.sessions.findOne({ where: { userAgent } }))!;
      const data = JSON.parse(row.data) as { meta: { createdAt: number; lastSeenAt: number } };
      change(data.meta);
      await t.database.sessions.update({ data: JSON.stringify(data) }, { where: { sid: row.sid } });
    };
    await age('WentIdle/1.0', (meta) => (meta.lastSeenAt = Date.now() - idleTimeoutMs - 60_000));
    await age('TooOld/1.0', (meta) => (meta.createdAt = Date.now() - absoluteTimeoutMs - 60_000));
    expect(await t.database.sessions.count({ where: { userAgent: ['WentIdle/1.0', 'TooOld/1.0'] } }), 'rows still stored').to.equal(2);

    const rows = tableRows((await mine.get('/account').expect(200)).text, 'sessions-heading').map(unescapeHtml);
    expect(rows).to.have.length(1);
    expect(rows[0]).to.contain('StillHere/1.0');
  });

  it('never shows the session cookie value or cookie id on the page', async () => {
    const agent = browser(t.server);
    const username = await registerUser(browser(t.server));
    const login = await loginUser(agent, username);
    const cookie = (login.headers['set-cookie'] as unknown as string[])[0]!.split(';')[0]!;
    const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
    const sid = value.slice(2, value.lastIndexOf('.'));
    const page = await agent.get('/account').expect(200);
    expect(page.text).to.not.contain(sid);
  });

  it('shows the user\'s last 20 audit events, newest first, and nobody else\'s', async () => {
    const agent = browser(t.server);
    await registerUser(agent);
    for (let i = 0; i < 24; i += 1) await agent.get('/auth/token').expect(200);
    const _csrf = await formToken(agent, '/account');
    await agent
      .post('/account/password')
      .type('form')
      .send({ _csrf, currentPassword: STRONG_PASSWORD, newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD })
      .expect(303);
    const someoneElse = browser(t.server);
    await registerUser(someoneElse);
    await someoneElse.get('/auth/token').expect(200);

    const page = await agent.get('/account').expect(200);
    const rows = tableRows(page.text, 'activity-heading');
    expect(rows).to.have.length(20);
    const events = rows.map((r) => cells(r)[1]);
    expect(events[0]).to.equal('password changed');
    expect(events.slice(1)).to.deep.equal(Array(19).fill('token minted'));
    expect(events).to.not.include('registered'); // the oldest ones fell off
    const times = rows.map((r) => Date.parse(/datetime="([^"]+)"/.exec(r)![1]!));
    expect([...times].sort((a, b) => b - a)).to.deep.equal(times);
  });

  it('says so when there is no activity yet', async () => {
    const agent = browser(t.server);
    await registerUser(agent);
    await t.database.auditEvents.destroy({ where: {} });
    const page = await agent.get('/account').expect(200);
    expect(tableRows(page.text, 'activity-heading')).to.have.length(0);
    expect(page.text).to.contain('Nothing yet.');
  });

  it('puts a hidden _csrf in every form on the page', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    await loginUser(browser(t.server), username);
    const page = await agent.get('/account').expect(200);
    const forms = formsOn(page.text);
    // password, two session rows (each with a revoke form), sign out everywhere, and the header's sign-out
    expect(forms.length).to.be.at.least(4);
    const token = csrfFrom(page.text);
    for (const form of forms) {
      expect(form).to.match(/method="post"/);
      expect(form, form).to.contain(`<input type="hidden" name="_csrf" value="${token}">`);
    }
    const actions = forms.map((f) => /action="([^"]+)"/.exec(f)![1]);
    expect(actions).to.include('/account/password');
    expect(actions).to.include('/auth/logout-everywhere');
    expect(actions.filter((a) => /^\/account\/sessions\/[^/]+\/revoke$/.test(a!))).to.have.length(2);
  });
});

describe('changing the password', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  async function change(agent: Agent, fields: Record<string, string>) {
    const _csrf = await formToken(agent, '/account');
    return agent.post('/account/password').type('form').send({ _csrf, ...fields });
  }

  it('works with the right current password: the new one signs in, the old one no longer does', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const res = await change(agent, { currentPassword: STRONG_PASSWORD, newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD });
    expect(res.status).to.equal(303);
    const page = await agent.get('/account').expect(200);
    expect(page.text).to.contain('Your password was changed.');
    expect((await loginUser(browser(t.server), username, STRONG_PASSWORD)).status).to.equal(401);
    expect((await loginUser(browser(t.server), username, NEW_PASSWORD)).status).to.equal(302);
  });

  it('changes nothing when the current password is wrong: 400, a field error, the old password still signs in', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const other = browser(t.server);
    await loginUser(other, username);
    const hashBefore = (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!.passwordHash;

    const res = await change(agent, { currentPassword: 'not my password at all', newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD });
    expect(res.status).to.equal(400);
    expect(res.text).to.contain('Your password was not changed');
    expect(res.text).to.match(/<p class="field-error" id="current-error">Your current password is not correct.<\/p>/);
    expect(res.text).to.match(/id="currentPassword"[^>]*aria-invalid="true"/);
    expect(res.text, 'typed passwords are not echoed').to.not.contain(NEW_PASSWORD).and.not.contain('not my password at all');

    const row = (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!;
    expect(row.passwordHash).to.equal(hashBefore);
    expect(row.tokensValidAfter).to.equal(null);
    expect((await loginUser(browser(t.server), username, STRONG_PASSWORD)).status).to.equal(302);
    expect((await loginUser(browser(t.server), username, NEW_PASSWORD)).status).to.equal(401);
    expect(await isSignedIn(other), 'other sessions live on').to.equal(true);
    expect(await isSignedIn(agent)).to.equal(true);
  });

  it('refuses a weak new password with a field error and keeps the old one', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    for (const weak of ['short1', 'password1234', username]) {
      const res = await change(agent, { currentPassword: STRONG_PASSWORD, newPassword: weak, confirmPassword: weak });
      expect(res.status, weak).to.equal(400);
      expect(res.text).to.match(/<p class="field-error" id="new-error">[^<]+<\/p>/);
    }
    expect((await loginUser(browser(t.server), username, STRONG_PASSWORD)).status).to.equal(302);
  });

  it('refuses a new password that does not match its repetition', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const res = await change(agent, { currentPassword: STRONG_PASSWORD, newPassword: NEW_PASSWORD, confirmPassword: `${NEW_PASSWORD}x` });
    expect(res.status).to.equal(400);
    expect(res.text).to.match(/id="confirm-error"/);
    expect((await loginUser(browser(t.server), username, STRONG_PASSWORD)).status).to.equal(302);
  });

  it('refuses the current password as the new one', async () => {
    const agent = browser(t.server);
    await registerUser(agent);
    const res = await change(agent, { currentPassword: STRONG_PASSWORD, newPassword: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD });
    expect(res.status).to.equal(400);
    expect(res.text).to.match(/id="new-error"/);
  });

  it('sends a signed-out form post to sign in without changing anything', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const _csrf = await formToken(agent, '/account');
    await agent.post('/auth/logout').type('form').send({ _csrf }).expect(302);
    const fresh = await formToken(agent, '/auth/login');
    const res = await agent
      .post('/account/password')
      .type('form')
      .send({ _csrf: fresh, currentPassword: STRONG_PASSWORD, newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD });
    expect(res.status).to.equal(303);
    expect(res.headers.location).to.equal('/auth/login?returnTo=%2Faccount');
    expect((await loginUser(browser(t.server), username, STRONG_PASSWORD)).status).to.equal(302);
  });
});

describe('account forms without a valid _csrf', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('refuses a password change without _csrf (403) and keeps the old password', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const res = await agent
      .post('/account/password')
      .type('form')
      .send({ currentPassword: STRONG_PASSWORD, newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD });
    expect(res.status).to.equal(403);
    expect((await loginUser(browser(t.server), username, STRONG_PASSWORD)).status).to.equal(302);
  });

  it('refuses a password change with another session\'s _csrf (403)', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const attacker = browser(t.server);
    await registerUser(attacker);
    const foreign = await formToken(attacker, '/account');
    const res = await agent
      .post('/account/password')
      .type('form')
      .send({ _csrf: foreign, currentPassword: STRONG_PASSWORD, newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD });
    expect(res.status).to.equal(403);
    expect((await loginUser(browser(t.server), username, STRONG_PASSWORD)).status).to.equal(302);
  });

  it('refuses revoking a session without _csrf (403) and the session lives on', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const other = browser(t.server);
    await loginUser(other, username);
    const page = await agent.get('/account').expect(200);
    const ids = [...page.text.matchAll(/action="(\/account\/sessions\/[^"]+\/revoke)"/g)].map((m) => m[1]!);
    expect(ids).to.have.length(2);
    for (const action of ids) {
      const res = await agent.post(action).type('form').send({});
      expect(res.status).to.equal(403);
    }
    expect(await isSignedIn(agent)).to.equal(true);
    expect(await isSignedIn(other)).to.equal(true);
  });

  it('refuses sign-out everywhere without _csrf (403) and every session lives on', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const other = browser(t.server);
    await loginUser(other, username);
    const token = (await agent.get('/auth/token').expect(200)).body as { token: string };
    const res = await agent.post('/auth/logout-everywhere').type('form').send({});
    expect(res.status).to.equal(403);
    expect(await isSignedIn(agent)).to.equal(true);
    expect(await isSignedIn(other)).to.equal(true);
    await request(t.server).get('/api/me').set('Authorization', `Bearer ${token.token}`).expect(200);
  });
});
