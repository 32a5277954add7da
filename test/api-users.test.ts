import { expect } from 'chai';
import type { Server } from 'node:http';
import request from 'supertest';
import { UserAdmin } from '../services/user-admin.js';
import { TestClock } from './helpers/clock.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { browser, registerUser, type Agent } from './helpers/browser.js';

interface ListedUser {
  id: string;
  username: string;
  roles: string[];
  disabled: boolean;
  createdAt: string;
}

async function mint(agent: Agent): Promise<string> {
  return ((await agent.get('/auth/token').expect(200)).body as { token: string }).token;
}

function listUsers(server: Server, token: string) {
  return request(server).get('/api/users').set('Authorization', `Bearer ${token}`);
}

function expectInsufficientScope(res: request.Response) {
  expect(res.status, res.text).to.equal(403);
  expect(res.headers['content-type']).to.match(/application\/json/);
  const challenge = res.headers['www-authenticate'];
  expect(challenge).to.match(/^Bearer /);
  expect(challenge).to.contain('error="insufficient_scope"');
  expect((res.body as { error: string }).error).to.equal('insufficient_scope');
  expect((res.body as { message: string }).message).to.be.a('string');
}


describe('GET /api/users', () => {
  let t: TestApp;
  let admin: UserAdmin;
  before(async () => {
    t = await startTestApp();
    admin = new UserAdmin(t.database.users, Date.now);
  });
  after(() => t.close());

  it('gives an admin every user as {id, username, roles, disabled, createdAt} and nothing else', async () => {
    const boss = browser(t.server);
    const bossName = await registerUser(boss);
    await admin.setRole(bossName, 'admin', true);
    const plainName = await registerUser(browser(t.server));
    const gone = await registerUser(browser(t.server));
    await admin.setDisabled(gone, true);

    const res = await listUsers(t.server, await mint(boss));
    expect(res.status, res.text).to.equal(200);
    expect(res.headers['content-type']).to.match(/application\/json/);
    expect(res.headers['cache-control']).to.contain('no-store');
    const list = res.body as ListedUser[];
    expect(list).to.be.an('array');
    expect(list.length).to.equal(await t.database.users.count());
    for (const user of list) {
      expect(Object.keys(user).sort()).to.deep.equal(['createdAt', 'disabled', 'id', 'roles', 'username']);
      expect(user.id).to.match(/^\d+$/);
      expect(user.roles).to.be.an('array');
      expect(user.disabled).to.be.a('boolean');
      expect(new Date(user.createdAt).toISOString()).to.equal(user.createdAt);
    }
    const byName = (name: string) => list.find((u) => u.username === name)!;
    expect(byName(bossName).roles).to.deep.equal(['admin']);
    expect(byName(plainName)).to.include({ disabled: false });
    expect(byName(plainName).roles).to.deep.equal([]);
    expect(byName(gone).disabled).to.equal(true);
    const row = await t.database.users.findOne({ where: { usernameKey: plainName.toLowerCase() } });
    expect(byName(plainName).id).to.equal(String(row!.id));
    expect(res.text).to.not.contain('$argon2').and.not.match(/password|hash|tokensValidAfter/i);
  });

  it('answers a valid token without the admin role with 403 insufficient_scope', async () => {
    const agent = browser(t.server);
    await registerUser(agent);
    expectInsufficientScope(await listUsers(t.server, await mint(agent)));
  });

  it('answers without a token with 401 and the bare Bearer challenge', async () => {
    const res = await request(t.server).get('/api/users');
    expect(res.status).to.equal(401);
    expect(res.headers['www-authenticate']).to.equal('Bearer realm="api"');
  });

  it('reads the role from the database: granted or revoked after minting, it takes effect at once here', async () => {
    const agent = browser(t.server);
    const name = await registerUser(agent);
    const token = await mint(agent);
    expectInsufficientScope(await listUsers(t.server, token));
    await admin.setRole(name, 'admin', true);
    expect((await listUsers(t.server, token)).status).to.equal(200);
    await admin.setRole(name, 'admin', false);
    expectInsufficientScope(await listUsers(t.server, token));
  });
});

describe('GET /api/users with the revocation cache on', () => {
  const TTL = 300;
  let clock: TestClock;
  let t: TestApp;
  before(async () => {
    clock = new TestClock();
    t = await startTestApp({ env: { REVOCATION_CACHE_TTL: String(TTL) }, clock: clock.read });
  });
  after(() => t.close());

  it('honours a role granted after the token was minted within REVOCATION_CACHE_TTL', async () => {
    const agent = browser(t.server);
    const name = await registerUser(agent);
    const token = await mint(agent);
    expectInsufficientScope(await listUsers(t.server, token)); // the user's state is now cached

    await new UserAdmin(t.database.users, Date.now).setRole(name, 'admin', true); // as `npm run users -- grant` does
    clock.advance(TTL - 1);
    expectInsufficientScope(await listUsers(t.server, token)); // still the cached answer: the bound
    clock.advance(2);
    expect((await listUsers(t.server, token)).status).to.equal(200);

    const me = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
    expect((me.body as { roles: string[] }).roles).to.deep.equal(['admin']);
  });

  it('withdraws admin access within REVOCATION_CACHE_TTL of a role being revoked', async () => {
    const agent = browser(t.server);
    const name = await registerUser(agent);
    await new UserAdmin(t.database.users, Date.now).setRole(name, 'admin', true);
    const token = await mint(agent);
    expect((await listUsers(t.server, token)).status).to.equal(200);

    await new UserAdmin(t.database.users, Date.now).setRole(name, 'admin', false);
    clock.advance(TTL - 1);
    expect((await listUsers(t.server, token)).status).to.equal(200); // still the cached answer: the bound
    clock.advance(2);
    expectInsufficientScope(await listUsers(t.server, token));
  });
});
