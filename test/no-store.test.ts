import { expect } from 'chai';
import request from 'supertest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { browser, registerUser } from './helpers/browser.js';

describe('Cache-Control: no-store (one middleware for every answer)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('is on every page, form, API answer, probe and error, signed in or not', async () => {
    const anonymous = ['/', '/auth/login', '/auth/register', '/healthz', '/readyz', '/api/me', '/api/nothing-here', '/no-such-page', '/auth/token', '/account'];
    for (const path of anonymous) {
      const res = await request(t.server).get(path);
      expect(res.headers['cache-control'], `${path} (${res.status})`).to.equal('no-store');
    }
    const agent = browser(t.server);
    await registerUser(agent);
    const token = (await agent.get('/auth/token').expect(200)).body as { token: string };
    for (const path of ['/', '/account', '/token', '/auth/token']) {
      const res = await agent.get(path);
      expect(res.headers['cache-control'], `${path} signed in (${res.status})`).to.equal('no-store');
    }
    const me = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token.token}`).expect(200);
    expect(me.headers['cache-control']).to.equal('no-store');
    const posted = await request(t.server).post('/auth/login').type('form').send({ username: 'x', password: 'y' });
    expect(posted.status).to.equal(403);
    expect(posted.headers['cache-control']).to.equal('no-store');
  });

  it('leaves static files to their own caching rules', async () => {
    const res = await request(t.server).get('/static/style.css').expect(200);
    expect(res.headers['cache-control']).to.match(/^public, max-age=\d+$/);
  });
});
