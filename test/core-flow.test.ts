import { expect } from 'chai';
import request from 'supertest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { browser, loginUser, registerUser, STRONG_PASSWORD } from './helpers/browser.js';

describe('sign in, mint a token, call the API', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('registers, signs in, mints a six-hour token and calls /api/me with it', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent, 'Alice_Example');
    const logout = await agent.get('/');
    expect(logout.text).to.contain('Alice_Example');

    const other = browser(t.server);
    const login = await loginUser(other, 'alice_example', STRONG_PASSWORD);
    expect(login.status).to.equal(302);
    expect(login.headers.location).to.equal('/');

    const tokenRes = await other.get('/auth/token').expect(200).expect('Content-Type', /application\/json/);
    expect(tokenRes.headers['cache-control']).to.contain('no-store');
    expect(tokenRes.body).to.include({ token_type: 'Bearer', expires_in: 21600 });

    const me = await request(t.server).get('/api/me').set('Authorization', `Bearer ${tokenRes.body.token}`).expect(200);
    expect(me.body).to.deep.equal({ id: me.body.id, username, roles: [] });
    expect(me.body.id).to.match(/^\d+$/);
  });
});
