import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type { NextFunction, Request, Response } from 'express';
import request from 'supertest';
import { sessionLifetime } from '../middleware/session.js';
import type { SessionMeta } from '../types/session.js';
import { startTestApp, tempSqliteUrl, testConfig, type TestApp } from './helpers/app.js';
import { browser, formToken, loginUser, registerUser, sessionCookie, STRONG_PASSWORD, uniqueName } from './helpers/browser.js';

const HOUR = 3_600_000;

/** The `sid` inside a signed `name=s%3A<sid>.<signature>` cookie. */
function sidOf(cookie: string): string {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
  expect(value.startsWith('s:')).to.equal(true);
  return value.slice(2, value.lastIndexOf('.'));
}

function setCookies(res: { headers: Record<string, unknown> }): string[] {
  return (res.headers['set-cookie'] as string[] | undefined) ?? [];
}

/** The attributes of one Set-Cookie line, lower-cased names. */
function cookieAttributes(line: string): Map<string, string> {
  return new Map(
    line
      .split(';')
      .slice(1)
      .map((part) => part.trim().split('='))
      .map(([name, ...value]) => [name!.toLowerCase(), value.join('=')]),
  );
}

async function cookieIsSignedIn(t: TestApp, cookie: string): Promise<boolean> {
  const res = await request(t.server).get('/auth/token').set('Cookie', cookie);
  expect(res.status).to.be.oneOf([200, 401]);
  return res.status === 200;
}

/** Registers a user in one browser, signs in with another; returns that sign-in's cookie. */
async function signedInCookie(t: TestApp, username = uniqueName('sess')): Promise<{ username: string; cookie: string }> {
  await registerUser(browser(t.server), username);
  const res = await loginUser(browser(t.server), username);
  expect(res.status).to.equal(302);
  return { username, cookie: sessionCookie(res)! };
}

/** Rewrites the stored session data as a clock change would see it. */
async function editStoredSession(t: TestApp, cookie: string, edit: (data: { meta: SessionMeta; cookie: { expires: string } }) => void) {
  const row = await t.database.sessions.findByPk(sidOf(cookie));
  expect(row, 'session row').not.to.equal(null);
  const data = JSON.parse(row!.data);
  edit(data);
  await row!.update({ data: JSON.stringify(data) });
}

describe('session fixation', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('gives the browser a new session id when it signs in', async () => {
    const username = await registerUser(browser(t.server), uniqueName('fix'));
    const agent = browser(t.server);
    const page = await agent.get('/auth/login').expect(200);
    const before = sessionCookie(page);
    expect(before, 'the login page starts a session for its CSRF token').to.be.a('string');
    const res = await loginUser(agent, username);
    expect(res.status).to.equal(302);
    const after = sessionCookie(res);
    expect(after).to.be.a('string');
    expect(sidOf(after!)).not.to.equal(sidOf(before!));
  });

  it('leaves a session id planted before sign-in signed out, and deletes it from the store', async () => {
    const username = await registerUser(browser(t.server), uniqueName('fix'));
    // The attacker fetches the login page and plants that cookie in the victim's browser.
    const planted = sessionCookie(await request(t.server).get('/auth/login').expect(200))!;
    const victim = browser(t.server);
    victim.jar.setCookie(`${planted}; Path=/`);
    const page = await victim.get('/auth/login').expect(200);
    expect(sessionCookie(page), 'the victim uses the planted session').to.equal(undefined);
    const _csrf = /name="_csrf" value="([^"]+)"/.exec(page.text)![1];
    const res = await victim.post('/auth/login').type('form').send({ _csrf, username, password: STRONG_PASSWORD });
    expect(res.status).to.equal(302);
    expect(sessionCookie(res)).not.to.equal(planted);
    expect(await cookieIsSignedIn(t, planted)).to.equal(false);
    expect(await t.database.sessions.findByPk(sidOf(planted))).to.equal(null);
    expect(await cookieIsSignedIn(t, sessionCookie(res)!)).to.equal(true);
  });

  it('gives the browser a new session id when registration signs it in', async () => {
    const agent = browser(t.server);
    const page = await agent.get('/auth/register').expect(200);
    const before = sessionCookie(page)!;
    const _csrf = await formToken(agent, '/auth/register');
    const res = await agent
      .post('/auth/register')
      .type('form')
      .send({ _csrf, username: uniqueName('fixreg'), password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD });
    expect(res.status).to.equal(302);
    expect(sidOf(sessionCookie(res)!)).not.to.equal(sidOf(before));
    expect(await cookieIsSignedIn(t, before)).to.equal(false);
  });
});

describe('session cookie', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('is not named connect.sid', async () => {
    const res = await request(t.server).get('/auth/login').expect(200);
    const lines = setCookies(res);
    expect(lines).to.have.length(1);
    expect(lines[0]).not.to.match(/^connect\.sid=/);
    expect(lines[0]).to.match(/^tb\.sid=/);
  });

  it('is HttpOnly, SameSite=Lax, Path=/ and host-only on the login page and after sign-in', async () => {
    const { cookie: _ignored, username } = await signedInCookie(t);
    const agent = browser(t.server);
    const page = await agent.get('/auth/login').expect(200);
    const _csrf = /name="_csrf" value="([^"]+)"/.exec(page.text)![1];
    const login = await agent.post('/auth/login').type('form').send({ _csrf, username, password: STRONG_PASSWORD }).expect(302);
    for (const res of [page, login]) {
      const line = setCookies(res).find((c) => c.startsWith('tb.sid='))!;
      const attrs = cookieAttributes(line);
      expect(attrs.has('httponly'), line).to.equal(true);
      expect(attrs.get('samesite'), line).to.equal('Lax');
      expect(attrs.get('path'), line).to.equal('/');
      expect(attrs.has('domain'), line).to.equal(false);
    }
  });

  it('is not Secure outside production, so sign-in works on http://localhost', async () => {
    const res = await request(t.server).get('/auth/login').expect(200);
    expect(cookieAttributes(setCookies(res)[0]!).has('secure')).to.equal(false);
  });

  it('is not set by an anonymous visit to the home page, a 404 or the health check', async () => {
    const before = await t.database.sessions.count();
    for (const path of ['/', '/no-such-page', '/healthz']) {
      const res = await request(t.server).get(path);
      expect(setCookies(res), path).to.deep.equal([]);
    }
    expect(await t.database.sessions.count()).to.equal(before);
  });

  it('is not set by a refused (403) form post from a browser without a session', async () => {
    const before = await t.database.sessions.count();
    const res = await request(t.server).post('/auth/login').type('form').send({ username: 'x', password: 'y' });
    expect(res.status).to.equal(403);
    expect(setCookies(res)).to.deep.equal([]);
    expect(await t.database.sessions.count()).to.equal(before);
  });
});

describe('session cookie in production', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({
      env: {
        NODE_ENV: 'production',
        JWT_SECRET_KEY: randomBytes(48).toString('base64url'),
        SESSION_SECRET: randomBytes(48).toString('base64url'),
        // The tests speak plain HTTP to the app as a TLS-terminating proxy would.
        TRUST_PROXY: '1',
      },
    });
  });
  after(() => t.close());

  it('is Secure and named with the __Host- prefix (Path=/, no Domain)', async () => {
    const res = await request(t.server).get('/auth/login').set('X-Forwarded-Proto', 'https').expect(200);
    const lines = setCookies(res);
    expect(lines).to.have.length(1);
    expect(lines[0]).to.match(/^__Host-tb\.sid=/);
    const attrs = cookieAttributes(lines[0]!);
    expect(attrs.has('secure')).to.equal(true);
    expect(attrs.has('httponly')).to.equal(true);
    expect(attrs.get('samesite')).to.equal('Lax');
    expect(attrs.get('path')).to.equal('/');
    expect(attrs.has('domain')).to.equal(false);
  });

  it('is never sent over plain HTTP', async () => {
    const res = await request(t.server).get('/auth/login').expect(200);
    expect(setCookies(res)).to.deep.equal([]);
  });

  it('signs in and mints a token over HTTPS', async () => {
    const username = uniqueName('prod');
    const page = await request(t.server).get('/auth/register').set('X-Forwarded-Proto', 'https').expect(200);
    const cookie = sessionCookie(page, '__Host-tb.sid')!;
    const _csrf = /name="_csrf" value="([^"]+)"/.exec(page.text)![1];
    const res = await request(t.server)
      .post('/auth/register')
      .set('X-Forwarded-Proto', 'https')
      .set('Cookie', cookie)
      .type('form')
      .send({ _csrf, username, password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD });
    expect(res.status).to.equal(302);
    const signedIn = sessionCookie(res, '__Host-tb.sid')!;
    await request(t.server).get('/auth/token').set('X-Forwarded-Proto', 'https').set('Cookie', signedIn).expect(200);
  });
});

describe('sessions survive a restart', () => {
  let db: ReturnType<typeof tempSqliteUrl>;
  before(() => {
    db = tempSqliteUrl();
  });
  after(() => db.cleanup());

  it('keeps a browser signed in across an app restart on the same database file', async () => {
    const first = await startTestApp({ databaseUrl: db.url });
    let cookie: string;
    try {
      ({ cookie } = await signedInCookie(first));
      expect(await cookieIsSignedIn(first, cookie)).to.equal(true);
    } finally {
      await first.close();
    }
    const second = await startTestApp({ databaseUrl: db.url });
    try {
      expect(await cookieIsSignedIn(second, cookie)).to.equal(true);
    } finally {
      await second.close();
    }
  });
});

describe('session lifetime (sessionLifetime middleware)', () => {
  const settings = testConfig({ SESSION_IDLE_TIMEOUT: '2h', SESSION_ABSOLUTE_TIMEOUT: '12h' }).session;
  const T0 = Date.UTC(2030, 0, 1);

  function run(meta: SessionMeta | undefined, now: number) {
    const calls = { regenerated: false, next: 0 };
    const req = {
      session: {
        meta,
        regenerate(cb: (err?: unknown) => void) {
          calls.regenerated = true;
          cb();
        },
      },
    } as unknown as Request;
    sessionLifetime(settings, () => now)(req, {} as Response, (() => {
      calls.next += 1;
    }) as NextFunction);
    return calls;
  }

  const meta = (createdAt: number, lastSeenAt: number): SessionMeta => ({ id: 'x', createdAt, lastSeenAt, ip: null, userAgent: null });

  it('lets an anonymous session (no sign-in metadata) through', () => {
    expect(run(undefined, T0)).to.deep.equal({ regenerated: false, next: 1 });
  });

  it('keeps a session active within both limits', () => {
    expect(run(meta(T0, T0), T0 + 2 * HOUR - 1)).to.deep.equal({ regenerated: false, next: 1 });
  });

  it('ends a session idle for longer than the idle timeout', () => {
    expect(run(meta(T0, T0), T0 + 2 * HOUR + 1)).to.deep.equal({ regenerated: true, next: 1 });
  });

  it('ends a session older than the absolute lifetime even when it was just used', () => {
    const m = meta(T0, T0 + 12 * HOUR);
    expect(run(m, T0 + 12 * HOUR + 1)).to.deep.equal({ regenerated: true, next: 1 });
  });

  it('records activity, so a session in use does not go idle', () => {
    const m = meta(T0, T0);
    run(m, T0 + HOUR);
    expect(m.lastSeenAt).to.equal(T0 + HOUR);
    expect(run(m, T0 + 2.5 * HOUR)).to.deep.equal({ regenerated: false, next: 1 });
  });

  it('writes last-seen at most once a minute', () => {
    const m = meta(T0, T0);
    run(m, T0 + 30_000);
    expect(m.lastSeenAt).to.equal(T0);
  });
});

describe('session lifetime (stored sessions)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('keeps an untouched session signed in (control for the cases below)', async () => {
    const { cookie } = await signedInCookie(t);
    await editStoredSession(t, cookie, () => {});
    expect(await cookieIsSignedIn(t, cookie)).to.equal(true);
  });

  it('signs out a session created longer ago than the absolute lifetime, and deletes it', async () => {
    const { cookie } = await signedInCookie(t);
    await editStoredSession(t, cookie, (data) => {
      data.meta.createdAt = Date.now() - t.config.session.absoluteTimeoutMs - 1000;
    });
    expect(await cookieIsSignedIn(t, cookie)).to.equal(false);
    expect(await t.database.sessions.findByPk(sidOf(cookie))).to.equal(null);
  });

  it('signs out a session idle for longer than the idle timeout', async () => {
    const { cookie } = await signedInCookie(t);
    await editStoredSession(t, cookie, (data) => {
      data.meta.lastSeenAt = Date.now() - t.config.session.idleTimeoutMs - 1000;
    });
    expect(await cookieIsSignedIn(t, cookie)).to.equal(false);
  });

  it('signs out a session whose stored cookie expiry has passed, and deletes it', async () => {
    const { cookie } = await signedInCookie(t);
    await editStoredSession(t, cookie, (data) => {
      data.cookie.expires = new Date(Date.now() - 1000).toISOString();
    });
    expect(await cookieIsSignedIn(t, cookie)).to.equal(false);
    expect(await t.database.sessions.findByPk(sidOf(cookie))).to.equal(null);
  });

  it('records who the session belongs to in the store (user, public id, last seen)', async () => {
    const { username, cookie } = await signedInCookie(t);
    const user = await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } });
    const row = await t.database.sessions.findByPk(sidOf(cookie));
    expect(row!.userId).to.equal(user!.id);
    expect(row!.publicId).to.match(/^[0-9a-f-]{36}$/);
    expect(row!.publicId).not.to.equal(sidOf(cookie));
    expect(row!.lastSeenAt).to.be.instanceOf(Date);
  });

  it('ends the browser session of a user who is disabled', async () => {
    const { username, cookie } = await signedInCookie(t);
    await t.database.users.update({ disabled: true }, { where: { usernameKey: username.toLowerCase() } });
    expect(await cookieIsSignedIn(t, cookie)).to.equal(false);
    const home = await request(t.server).get('/').set('Cookie', cookie).expect(200);
    expect(home.text).not.to.contain(username);
  });

  it('does not accept a cookie whose signature was tampered with', async () => {
    const { cookie } = await signedInCookie(t);
    const tampered = cookie.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect(await cookieIsSignedIn(t, tampered)).to.equal(false);
    expect(await cookieIsSignedIn(t, `tb.sid=${sidOf(cookie)}`)).to.equal(false);
  });
});
