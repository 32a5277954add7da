import { expect } from 'chai';
import type { Server } from 'node:http';
import request from 'supertest';
import { migrateUp } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';
import { AppError } from '../errors.js';
import { AuditLog } from '../services/audit-log.js';
import { RevocationService } from '../services/revocation.js';
import { SessionService } from '../services/sessions.js';
import { TokenAccess } from '../services/token-access.js';
import { TokenService, type AccessTokenClaims } from '../services/tokens.js';
import { UserAdmin } from '../services/user-admin.js';
import { toPublicUser, UserService, type PublicUser } from '../services/users.js';
import { startTestApp, tempSqliteUrl, type TestApp } from './helpers/app.js';
import { TestClock } from './helpers/clock.js';
import {
  browser,
  csrfFrom,
  formToken,
  loginUser,
  registerUser,
  sessionCookie,
  STRONG_PASSWORD,
  type Agent,
} from './helpers/browser.js';

const NEW_PASSWORD = 'a brand new passphrase 77';

async function mint(agent: Agent): Promise<string> {
  const res = await agent.get('/auth/token');
  expect(res.status, res.text).to.equal(200);
  return (res.body as { token: string }).token;
}

function me(server: Server, token: string) {
  return request(server).get('/api/me').set('Authorization', `Bearer ${token}`);
}

async function expectAccepted(server: Server, token: string, username: string): Promise<void> {
  const res = await me(server, token);
  expect(res.status, res.text).to.equal(200);
  expect((res.body as { username: string }).username).to.equal(username);
}

async function expectRejected(server: Server, token: string): Promise<void> {
  const res = await me(server, token);
  expect(res.status, res.text).to.equal(401);
  expect(res.headers['www-authenticate']).to.match(/^Bearer /).and.to.contain('error="invalid_token"');
  expect((res.body as { error: string }).error).to.equal('invalid_token');
}

async function isSignedIn(agent: Agent): Promise<boolean> {
  const res = await agent.get('/auth/token');
  expect(res.status).to.be.oneOf([200, 401]);
  return res.status === 200;
}

/** A second browser of the same user, with its own user agent. */
async function signInElsewhere(server: Server, username: string, userAgent: string, password = STRONG_PASSWORD): Promise<Agent> {
  const agent = browser(server).set('User-Agent', userAgent);
  const res = await loginUser(agent, username, password);
  expect(res.status, res.text).to.equal(302);
  return agent;
}

/** The public ids of the user's sessions as the account page lists them, and which one is this browser's. */
async function accountSessions(agent: Agent): Promise<{ ids: string[]; current: string }> {
  const page = await agent.get('/account').expect(200);
  const ids = [...page.text.matchAll(/action="\/account\/sessions\/([^/"]+)\/revoke"/g)].map((m) => decodeURIComponent(m[1]!));
  const row = /<tr class="current">[\s\S]*?action="\/account\/sessions\/([^/"]+)\/revoke"/.exec(page.text);
  expect(row, 'the row of this browser').to.not.equal(null);
  return { ids, current: decodeURIComponent(row![1]!) };
}


describe('token revocation', () => {
  let t: TestApp;
  beforeEach(async () => {
    t = await startTestApp();
  });
  afterEach(() => t.close());

  it('rejects a token minted from a session after that session signs out', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const token = await mint(agent);
    await expectAccepted(t.server, token, username);

    const _csrf = await formToken(agent, '/');
    await agent.post('/auth/logout').type('form').send({ _csrf }).expect(302);

    await expectRejected(t.server, token);
  });

  it('keeps tokens of the user\'s other sessions working after one session signs out', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const other = await signInElsewhere(t.server, username, 'OtherBrowser/1.0');
    const otherToken = await mint(other);

    const _csrf = await formToken(agent, '/');
    await agent.post('/auth/logout').type('form').send({ _csrf }).expect(302);

    await expectAccepted(t.server, otherToken, username);
    expect(await isSignedIn(other)).to.equal(true);
  });

  it('after sign-out everywhere rejects every earlier token, ends every other session and signs this browser out', async () => {
    const agent = browser(t.server).set('User-Agent', 'ThisBrowser/1.0');
    const username = await registerUser(agent);
    const other = await signInElsewhere(t.server, username, 'OtherBrowser/1.0');
    const third = await signInElsewhere(t.server, username, 'ThirdBrowser/1.0');
    const tokens = [await mint(agent), await mint(agent), await mint(other), await mint(third)];
    for (const token of tokens) await expectAccepted(t.server, token, username);

    const _csrf = await formToken(agent, '/account');
    const res = await agent.post('/auth/logout-everywhere').type('form').send({ _csrf });
    expect(res.status).to.equal(302);

    for (const token of tokens) await expectRejected(t.server, token);
    expect(await isSignedIn(agent), 'this browser').to.equal(false);
    expect(await isSignedIn(other), 'other browser').to.equal(false);
    expect(await isSignedIn(third), 'third browser').to.equal(false);
    expect(await t.database.sessions.count({ where: { userId: (await userId(t, username)) } })).to.equal(0);

    // The account itself still works: a new sign-in gets a new, accepted token.
    const again = await signInElsewhere(t.server, username, 'ThisBrowser/1.0');
    await expectAccepted(t.server, await mint(again), username);
  });

  it('after sign-out everywhere also rejects a token whose session had already ended on its own', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const idle = await signInElsewhere(t.server, username, 'IdleBrowser/1.0');
    const { current: idleId } = await accountSessions(idle);
    // Minted from that session a minute ago (tokens of the very second of the sign-out are
    // told apart only by their session's revocation: "tokens valid after" has 1 s resolution).
    const user = (await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } }))!;
    const idleToken = new TokenService(t.config.jwt, () => Date.now() - 60_000).mint(toPublicUser(user), idleId).token;
    // The store sweeps an idle or expired session away without recording a revocation.
    expect(await t.database.sessions.destroy({ where: { publicId: idleId } })).to.equal(1);
    await expectAccepted(t.server, idleToken, username);

    const _csrf = await formToken(agent, '/account');
    await agent.post('/auth/logout-everywhere').type('form').send({ _csrf }).expect(302);
    await expectRejected(t.server, idleToken);
  });

  it('after a password change rejects earlier tokens, ends the other sessions and keeps this browser signed in under a new session id', async () => {
    const other = browser(t.server).set('User-Agent', 'OtherBrowser/1.0');
    const username = await registerUser(other);
    const agent = browser(t.server).set('User-Agent', 'ThisBrowser/1.0');
    const cookieBefore = sessionCookie(await loginUser(agent, username));
    expect(cookieBefore).to.be.a('string');
    const earlier = [await mint(agent), await mint(other)];
    const { current: publicIdBefore } = await accountSessions(agent);

    const _csrf = await formToken(agent, '/account');
    const res = await agent
      .post('/account/password')
      .type('form')
      .send({ _csrf, currentPassword: STRONG_PASSWORD, newPassword: NEW_PASSWORD, confirmPassword: NEW_PASSWORD });
    expect(res.status, res.text).to.equal(303);
    expect(res.headers.location).to.equal('/account');
    const cookieAfter = sessionCookie(res);
    expect(cookieAfter, 'a new session cookie').to.be.a('string').and.not.equal(cookieBefore);

    for (const token of earlier) await expectRejected(t.server, token);
    expect(await isSignedIn(other), 'other browser').to.equal(false);
    // The old cookie value no longer opens a session.
    const stale = await request(t.server).get('/auth/token').set('Cookie', cookieBefore!);
    expect(stale.status).to.equal(401);

    expect(await isSignedIn(agent), 'this browser').to.equal(true);
    const { ids, current } = await accountSessions(agent);
    expect(ids).to.deep.equal([current]);
    expect(current).to.not.equal(publicIdBefore);
    const fresh = await mint(agent);
    await expectAccepted(t.server, fresh, username);
  });

  it('revoking one session from the account page ends that session and its tokens but not the others', async () => {
    const agent = browser(t.server).set('User-Agent', 'ThisBrowser/1.0');
    const username = await registerUser(agent);
    const victim = await signInElsewhere(t.server, username, 'LostLaptop/1.0');
    const bystander = await signInElsewhere(t.server, username, 'Phone/1.0');
    const victimToken = await mint(victim);
    const bystanderToken = await mint(bystander);
    const ownToken = await mint(agent);

    const { current: victimId } = await accountSessions(victim);
    const page = await agent.get('/account').expect(200);
    const res = await agent.post(`/account/sessions/${encodeURIComponent(victimId)}/revoke`).type('form').send({ _csrf: csrfFrom(page.text) });
    expect(res.status).to.equal(303);
    expect(res.headers.location).to.equal('/account');

    await expectRejected(t.server, victimToken);
    expect(await isSignedIn(victim), 'revoked browser').to.equal(false);

    await expectAccepted(t.server, bystanderToken, username);
    await expectAccepted(t.server, ownToken, username);
    expect(await isSignedIn(bystander), 'other browser').to.equal(true);
    expect(await isSignedIn(agent), 'this browser').to.equal(true);
    const { ids } = await accountSessions(agent);
    expect(ids).to.have.length(2).and.not.include(victimId);
  });

  it('keeps a revoked session dead even when one of its requests was in flight during the revocation', async () => {
    const owner = browser(t.server);
    const username = await registerUser(owner);
    const victim = browser(t.server);
    await loginUser(victim, username);
    // The victim's id from the owner's page: the victim's own session must stay untouched until its
    // request below, whose first form token modifies the session (so it is saved at the end).
    const { ids, current } = await accountSessions(owner);
    const victimId = ids.find((id) => id !== current)!;
    const _csrf = await formToken(owner, '/account');

    // Hold the victim's next account page (its activity query) until the revocation is done.
    let release!: () => void;
    let entered!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const events = t.database.auditEvents as unknown as { findAll: (...args: unknown[]) => Promise<unknown> };
    const findAll = events.findAll.bind(events);
    events.findAll = async (...args: unknown[]) => {
      events.findAll = findAll;
      entered();
      await gate;
      return findAll(...args);
    };
    const inFlight = victim.get('/account').then((r) => r); // supertest starts on then()
    await inside;
    await owner.post(`/account/sessions/${encodeURIComponent(victimId)}/revoke`).type('form').send({ _csrf }).expect(303);
    release();
    await inFlight;

    expect(await isSignedIn(victim)).to.equal(false);
  });

  it('revoking this browser\'s own session from the account page signs it out and ends its tokens', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const other = await signInElsewhere(t.server, username, 'OtherBrowser/1.0');
    const token = await mint(agent);
    const otherToken = await mint(other);
    const { current } = await accountSessions(agent);
    const _csrf = await formToken(agent, '/account');
    const res = await agent.post(`/account/sessions/${encodeURIComponent(current)}/revoke`).type('form').send({ _csrf });
    expect(res.status).to.equal(303);
    expect(res.headers.location).to.equal('/');
    expect(await isSignedIn(agent)).to.equal(false);
    await expectRejected(t.server, token);
    await expectAccepted(t.server, otherToken, username);
  });

  it('answers revoking a session of another user with 404 and leaves that session alone', async () => {
    const alice = browser(t.server);
    await registerUser(alice);
    const bob = browser(t.server);
    const bobName = await registerUser(bob);
    const bobToken = await mint(bob);
    const { current: bobSession } = await accountSessions(bob);

    const _csrf = await formToken(alice, '/account');
    const res = await alice.post(`/account/sessions/${encodeURIComponent(bobSession)}/revoke`).type('form').send({ _csrf });
    expect(res.status).to.equal(404);
    await expectAccepted(t.server, bobToken, bobName);
    expect(await isSignedIn(bob)).to.equal(true);
  });
});

async function userId(t: TestApp, username: string): Promise<number> {
  const row = await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } });
  return row!.id;
}

describe('disabling a user (the users CLI code path)', () => {
  const TTL = 200;
  let t: TestApp;
  let clock: TestClock;
  before(async () => {
    clock = new TestClock();
    t = await startTestApp({ env: { REVOCATION_CACHE_TTL: String(TTL) }, clock: clock.read });
  });
  after(() => t.close());

  /** The service `npm run users -- disable|enable <name>` calls, built as the CLI builds it (no cache of the app's). */
  function cliRevocation(): RevocationService {
    const users = new UserService(t.database.users, clock.read);
    const admin = new UserAdmin(t.database.users, clock.read);
    const sessions = new SessionService(t.database.sessions, t.database.sessionRevocations, 24 * 3600_000, clock.read);
    return new RevocationService({ sessions, users, admin, audit: new AuditLog(t.database, clock.read) });
  }
  const CLI = { ip: null, userAgent: 'users-cli' };
  const disable = (username: string) => cliRevocation().setDisabled(username, true, CLI);

  it('stops the disabled user\'s token and session from working (within the cache bound)', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const token = await mint(agent);
    await expectAccepted(t.server, token, username); // warms the cache

    await disable(username);
    clock.advance(TTL + 1);

    await expectRejected(t.server, token);
    expect(await isSignedIn(agent)).to.equal(false);
    const login = await loginUser(browser(t.server), username);
    expect(login.status).to.equal(401);
  });

  it('keeps earlier tokens dead after the user is enabled again', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const token = await mint(agent);
    await disable(username);
    await cliRevocation().setDisabled(username, false, CLI);
    clock.advance(TTL + 1);

    await expectRejected(t.server, token);
    const again = browser(t.server);
    expect((await loginUser(again, username)).status).to.equal(302);
    await expectAccepted(t.server, await mint(again), username);
  });
});

describe('revocation across instances on one database', () => {
  const TTL = 400;
  /** B's clock (A runs on the system's): it starts at the real time when B starts. */
  let clockB: TestClock;
  let file: ReturnType<typeof tempSqliteUrl>;
  let a: TestApp;
  let b: TestApp;
  before(async () => {
    file = tempSqliteUrl();
    clockB = new TestClock();
    a = await startTestApp({ databaseUrl: file.url });
    b = await startTestApp({ databaseUrl: file.url, env: { REVOCATION_CACHE_TTL: String(TTL) }, clock: clockB.read });
  });
  after(async () => {
    await b.close();
    await a.close();
    file.cleanup();
  });

  it('honours a sign-out made on instance A on instance B within REVOCATION_CACHE_TTL', async () => {
    const agent = browser(a.server);
    const username = await registerUser(agent);
    const token = await mint(agent);
    const _csrf = await formToken(agent, '/');
    await expectAccepted(b.server, token, username); // B now holds a cached answer

    await agent.post('/auth/logout').type('form').send({ _csrf }).expect(302);
    await expectRejected(a.server, token); // A forgets at once

    // Inside the bound B still answers from its cache: that is the bound, not a bug.
    clockB.advance(TTL - 1);
    expect((await me(b.server, token)).status).to.equal(200);
    clockB.advance(2);
    await expectRejected(b.server, token);
  });

  it('honours a sign-out everywhere made on instance A on instance B within REVOCATION_CACHE_TTL', async () => {
    const agent = browser(a.server);
    const username = await registerUser(agent);
    const elsewhere = await signInElsewhere(b.server, username, 'OnB/1.0');
    const tokens = [await mint(agent), await mint(elsewhere)];
    for (const token of tokens) await expectAccepted(b.server, token, username);

    const _csrf = await formToken(agent, '/account');
    await agent.post('/auth/logout-everywhere').type('form').send({ _csrf }).expect(302);
    clockB.advance(TTL + 1);

    for (const token of tokens) await expectRejected(b.server, token);
    expect(await isSignedIn(elsewhere)).to.equal(false);
  });
});

describe('TokenAccess and UserService caches (injected clock)', () => {
  const TTL = 1000;
  const user: PublicUser = { id: 7, username: 'cached', roles: [], disabled: false, createdAt: new Date(0), tokensValidAfter: null };
  const claims: AccessTokenClaims = {
    sub: '7',
    username: 'cached',
    roles: [],
    sid: 'session-1',
    jti: 'jti-1',
    iat: 1_000,
    exp: 1_000 + 6 * 3600,
    iss: 'token-bridge',
    aud: 'api',
  };

  /** TokenAccess over stub services that count their look-ups; the clock starts far from 0. */
  function fixture(ttl = TTL) {
    const state = { revoked: false, user: user as PublicUser | null, sessionLookups: 0, forgotten: [] as number[], now: 5_000_000 };
    const users = {
      findActiveById: async () => state.user,
      cachedActive: () => undefined,
      forget: (id: number) => state.forgotten.push(id),
    } as unknown as UserService;
    const sessions = {
      isRevoked: async () => {
        state.sessionLookups += 1;
        return state.revoked;
      },
    } as unknown as SessionService;
    return { state, access: new TokenAccess(users, sessions, ttl, () => state.now) };
  }

  async function outcome(access: TokenAccess, c: AccessTokenClaims = claims): Promise<string> {
    try {
      await access.check(c);
      return 'ok';
    } catch (err) {
      return err instanceof AppError ? err.publicCode : String(err);
    }
  }

  it('answers a session\'s revocation status from the cache within the TTL, even after a revocation it was not told about', async () => {
    const { state, access } = fixture();
    expect(await outcome(access)).to.equal('ok');
    expect(state.sessionLookups).to.equal(1);

    state.revoked = true;
    state.now += TTL - 1;
    expect(await outcome(access)).to.equal('ok');
    expect(state.sessionLookups).to.equal(1);
  });

  it('looks the session up again once the TTL has passed and then refuses the revoked session', async () => {
    const { state, access } = fixture();
    expect(await outcome(access)).to.equal('ok');
    expect(await outcome(access)).to.equal('ok');
    expect(state.sessionLookups).to.equal(1);
    state.revoked = true;
    state.now += TTL + 1;
    expect(await outcome(access)).to.equal('invalid_token');
    expect(state.sessionLookups).to.equal(2);
  });

  it('drops cached answers at once on forgetUser (revocations made on this instance)', async () => {
    const { state, access } = fixture();
    expect(await outcome(access)).to.equal('ok');
    state.revoked = true;
    access.forgetUser(7);
    expect(state.forgotten).to.deep.equal([7]);
    expect(await outcome(access)).to.equal('invalid_token');
    expect(state.sessionLookups).to.equal(2);
  });

  it('does not cache at all with a TTL of 0', async () => {
    const { state, access } = fixture(0);
    expect(await outcome(access)).to.equal('ok');
    state.revoked = true;
    expect(await outcome(access)).to.equal('invalid_token');
    expect(state.sessionLookups).to.equal(2);
  });

  it('refuses a token older than tokens-valid-after and accepts one minted in that very second', async () => {
    const { state, access } = fixture();
    state.user = { ...user, tokensValidAfter: new Date((claims.iat + 1) * 1000) };
    expect(await outcome(access)).to.equal('invalid_token');
    state.user = { ...user, tokensValidAfter: new Date(claims.iat * 1000 + 999) };
    expect(await outcome(access)).to.equal('ok');
  });

  describe('with the real UserService cache', () => {
    let db: Database;
    before(async () => {
      db = await openDatabase('sqlite::memory:');
      await migrateUp(db);
    });
    after(() => db.close());

    it('serves a disabled user\'s token within the TTL and refuses it after (user state is cached with the same bound)', async () => {
      const clock = { now: 9_000_000 };
      const row = await db.users.create({ username: 'cachey', usernameKey: 'cachey', passwordHash: 'x', roles: [] });
      const users = new UserService(db.users, () => clock.now, { cacheTtlMs: TTL });
      const sessions = new SessionService(db.sessions, db.sessionRevocations, 3600_000, () => clock.now);
      const access = new TokenAccess(users, sessions, TTL, () => clock.now);
      const c = { ...claims, sub: String(row.id), sid: 'real-session' };

      expect(await outcome(access, c)).to.equal('ok');
      await db.users.update({ disabled: true }, { where: { id: row.id } });
      clock.now += TTL - 1;
      expect(await outcome(access, c), 'inside the bound').to.equal('ok');
      clock.now += 2;
      expect(await outcome(access, c), 'past the bound').to.equal('invalid_token');
    });
  });
});
