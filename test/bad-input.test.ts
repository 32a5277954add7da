import { expect } from 'chai';
import request from 'supertest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { browser, formToken, registerUser, STRONG_PASSWORD, uniqueName, type Agent } from './helpers/browser.js';

type Res = { status: number; text: string; headers: Record<string, unknown> };

/** A 4xx answer that shows nothing of the server's insides. */
function expectCleanClientError(res: Res, status?: number) {
  if (status !== undefined) expect(res.status, res.text.slice(0, 300)).to.equal(status);
  expect(res.status, res.text.slice(0, 300)).to.be.within(400, 499);
  expect(res.text).not.to.match(/^\s*at .+[(:]\d+/m);
  expect(res.text).not.to.match(/\bat [\w.<>]+ \(/);
  expect(res.text).not.to.contain('Error:');
  expect(res.text).not.to.contain('node_modules');
  expect(res.text).not.to.contain('/work/');
  expect(res.text).not.to.match(/\.(ts|js|ejs):\d+/);
}

async function isSignedIn(agent: Agent): Promise<boolean> {
  const res = await agent.get('/auth/token');
  expect(res.status).to.be.oneOf([200, 401]);
  return res.status === 200;
}

describe('bad input', () => {
  let t: TestApp;
  let username: string;
  before(async () => {
    t = await startTestApp();
    username = await registerUser(browser(t.server), uniqueName('bad'));
  });
  after(() => t.close());

  describe('oversized bodies', () => {
    it('answers a form body over 16 KiB with 413 and a plain error page', async () => {
      const res = await request(t.server)
        .post('/auth/login')
        .type('form')
        .send(`username=${'a'.repeat(17 * 1024)}&password=x`);
      expectCleanClientError(res, 413);
      expect(res.headers['content-type']).to.match(/text\/html/);
      expect(res.text).to.contain('too large');
    });

    it('answers a JSON body over 16 KiB with 413', async () => {
      const res = await request(t.server)
        .post('/auth/register')
        .set('Content-Type', 'application/json')
        .send(JSON.stringify({ username: 'a'.repeat(17 * 1024) }));
      expectCleanClientError(res, 413);
    });

    it('answers a 413 to a signed-in browser too, without a stack trace', async () => {
      const agent = browser(t.server);
      await registerUser(agent, uniqueName('big'));
      const res = await agent.post('/auth/logout').type('form').send(`_csrf=${'a'.repeat(20 * 1024)}`);
      expectCleanClientError(res, 413);
      expect(await isSignedIn(agent)).to.equal(true);
    });

    it('accepts a form body just under the limit (the limit is not lower than 16 KiB)', async () => {
      const agent = browser(t.server);
      const _csrf = await formToken(agent, '/auth/login');
      const res = await agent
        .post('/auth/login')
        .type('form')
        .send({ _csrf, username, password: 'p'.repeat(15 * 1024) });
      expect(res.status).to.equal(401);
    });

    it('answers more than 50 form fields with a 4xx', async () => {
      const body = Array.from({ length: 60 }, (_, i) => `f${i}=1`).join('&');
      const res = await request(t.server).post('/auth/login').type('form').send(body);
      expectCleanClientError(res);
    });
  });

  describe('malformed bodies', () => {
    it('answers malformed JSON with 400', async () => {
      const res = await request(t.server).post('/auth/login').set('Content-Type', 'application/json').send('{"username": "a",');
      expectCleanClientError(res, 400);
    });

    it('answers malformed JSON from a signed-in browser with 400', async () => {
      const agent = browser(t.server);
      await registerUser(agent, uniqueName('json'));
      const res = await agent.post('/auth/logout').set('Content-Type', 'application/json').send('{nope');
      expectCleanClientError(res, 400);
    });

    it('answers a body in an unsupported charset with a 4xx', async () => {
      const res = await request(t.server).post('/auth/login').set('Content-Type', 'application/x-www-form-urlencoded; charset=utf-7').send('username=a');
      expectCleanClientError(res);
    });

    it('answers an unsupported content encoding with a 4xx', async () => {
      const res = await request(t.server).post('/auth/login').set('Content-Type', 'application/x-www-form-urlencoded').set('Content-Encoding', 'compress').send('username=a');
      expectCleanClientError(res);
    });

    it('answers a form post in text/plain with 403 (no _csrf can be read), not 500', async () => {
      const res = await request(t.server).post('/auth/login').set('Content-Type', 'text/plain').send('username=a&password=b');
      expectCleanClientError(res, 403);
    });
  });

  describe('fields of the wrong type (with a valid _csrf)', () => {
    const cases: Array<[string, string, (csrf: string) => { type: 'form' | 'json'; body: string | object }]> = [
      ['a repeated username field', '/auth/login', (c) => ({ type: 'form', body: `_csrf=${c}&username=a&username=b&password=${encodeURIComponent(STRONG_PASSWORD)}` })],
      ['username[] array syntax', '/auth/login', (c) => ({ type: 'form', body: `_csrf=${c}&username[]=a&username[]=b&password=x` })],
      ['a repeated password field', '/auth/login', (c) => ({ type: 'form', body: `_csrf=${c}&username=abc&password=a&password=b` })],
      ['a JSON array username', '/auth/login', (c) => ({ type: 'json', body: { _csrf: c, username: ['a', 'b'], password: STRONG_PASSWORD } })],
      ['a JSON object username', '/auth/login', (c) => ({ type: 'json', body: { _csrf: c, username: { $ne: null }, password: STRONG_PASSWORD } })],
      ['a JSON object password', '/auth/login', (c) => ({ type: 'json', body: { _csrf: c, username: 'abc', password: { $gt: '' } } })],
      ['a JSON number password', '/auth/login', (c) => ({ type: 'json', body: { _csrf: c, username: 'abc', password: 123456789012 } })],
      ['a JSON boolean username', '/auth/login', (c) => ({ type: 'json', body: { _csrf: c, username: true, password: STRONG_PASSWORD } })],
      ['a JSON object returnTo', '/auth/login', (c) => ({ type: 'json', body: { _csrf: c, username: 'abc', password: STRONG_PASSWORD, returnTo: { href: '//evil' } } })],
      ['a repeated username on registration', '/auth/register', (c) => ({ type: 'form', body: `_csrf=${c}&username=a&username=b&password=x&confirmPassword=x` })],
      ['a JSON array password on registration', '/auth/register', (c) => ({ type: 'json', body: { _csrf: c, username: 'abcdef', password: ['x'], confirmPassword: ['x'] } })],
      ['a JSON object confirmPassword on registration', '/auth/register', (c) => ({ type: 'json', body: { _csrf: c, username: 'abcdef', password: STRONG_PASSWORD, confirmPassword: {} } })],
    ];

    for (const [label, path, make] of cases) {
      it(`answers ${label} on ${path} with 400 and signs nobody in`, async () => {
        const agent = browser(t.server);
        const csrf = await formToken(agent, path);
        const { type, body } = make(csrf);
        const req = agent.post(path);
        const res = type === 'form' ? await req.type('form').send(body as string) : await req.set('Content-Type', 'application/json').send(JSON.stringify(body));
        expectCleanClientError(res, 400);
        expect(await isSignedIn(agent)).to.equal(false);
      });
    }

    it('refuses an array _csrf with 403', async () => {
      const agent = browser(t.server);
      const csrf = await formToken(agent, '/auth/login');
      const res = await agent.post('/auth/login').type('form').send(`_csrf=${csrf}&_csrf=${csrf}&username=${username}&password=${encodeURIComponent(STRONG_PASSWORD)}`);
      expectCleanClientError(res, 403);
      expect(await isSignedIn(agent)).to.equal(false);
    });

    it('does not sign in with the password sent as a JSON array holding the right one', async () => {
      const agent = browser(t.server);
      const csrf = await formToken(agent, '/auth/login');
      const res = await agent.post('/auth/login').set('Content-Type', 'application/json').send(JSON.stringify({ _csrf: csrf, username, password: [STRONG_PASSWORD] }));
      expectCleanClientError(res, 400);
      expect(await isSignedIn(agent)).to.equal(false);
    });
  });

  describe('long strings', () => {
    for (const [label, fields] of [
      ['a 10,000-character username at login', { username: 'u'.repeat(10_000), password: STRONG_PASSWORD }],
      ['a 10,000-character password at login', { username: 'someone', password: 'p'.repeat(10_000) }],
      ['a 10,000-character username at registration', { username: 'u'.repeat(10_000), password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD }],
      ['a 7,000-character password at registration', { username: 'someone-long', password: 'p'.repeat(7_000), confirmPassword: 'p'.repeat(7_000) }],
      ['a 10,000-character returnTo', { username: 'someone', password: STRONG_PASSWORD, returnTo: `/${'r'.repeat(10_000)}` }],
    ] as const) {
      it(`answers ${label} with a 4xx`, async () => {
        const path = 'confirmPassword' in fields ? '/auth/register' : '/auth/login';
        const agent = browser(t.server);
        const _csrf = await formToken(agent, path);
        const res = await agent.post(path).type('form').send({ _csrf, ...fields });
        expectCleanClientError(res);
      });
    }
  });

  describe('unknown paths and odd URLs', () => {
    it('answers an unknown path with a 404 HTML page', async () => {
      const res = await request(t.server).get('/no/such/page').set('Accept', 'text/html');
      expectCleanClientError(res, 404);
      expect(res.headers['content-type']).to.match(/text\/html/);
      expect(res.text).to.contain('Page not found');
    });

    it('answers an unknown path under /auth with a 404', async () => {
      const res = await request(t.server).post('/auth/nothing-here').type('form').send({});
      expect(res.status).to.be.oneOf([403, 404]);
      expectCleanClientError(res);
    });

    it('answers a path with broken percent-encoding with a 4xx', async () => {
      const res = await request(t.server).get('/%E0%A4%A');
      expectCleanClientError(res);
    });

    it('answers a returnTo with broken percent-encoding on the login page with 200', async () => {
      const res = await request(t.server).get('/auth/login?returnTo=%E0%A4%A');
      expect(res.status).to.equal(200);
      expect(res.text).to.contain('name="returnTo" value="/"');
    });

    it('answers a repeated returnTo in the query with the form, returning to /', async () => {
      const res = await request(t.server).get('/auth/login?returnTo=/a&returnTo=/b');
      expect(res.status).to.equal(200);
      expect(res.text).to.contain('name="returnTo" value="/"');
    });

    it('ignores a malformed session cookie instead of failing', async () => {
      for (const cookie of ['tb.sid=%E0%A4%A', 'tb.sid=s%3A', 'tb.sid=s%3Aabc.def', `tb.sid=${'x'.repeat(4000)}`]) {
        const res = await request(t.server).get('/auth/login').set('Cookie', cookie);
        expect(res.status, cookie).to.equal(200);
        const token = await request(t.server).get('/auth/token').set('Cookie', cookie);
        expect(token.status, cookie).to.equal(401);
      }
    });

    it('answers an unsupported method on a form route with a 4xx', async () => {
      const res = await request(t.server).put('/auth/login').type('form').send({});
      expectCleanClientError(res);
    });
  });
});
