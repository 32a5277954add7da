import { expect } from 'chai';
import request from 'supertest';
import { safeReturnTo } from '../routes/return-to.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import {
  browser,
  csrfFrom,
  formToken,
  loginUser,
  registerUser,
  sessionCookie,
  STRONG_PASSWORD,
  uniqueName,
  type Agent,
} from './helpers/browser.js';

const GENERIC_FAILURE = 'Invalid username or password';
const ORIGIN = 'http://app.test';

/** The page with every `_csrf` value blanked, so two renders can be compared byte for byte. */
function withoutCsrf(html: string): string {
  return html.replace(/name="_csrf" value="[^"]*"/g, 'name="_csrf" value=""');
}

/** Reverses EJS's escaping of `<%= %>` output. */
function unescapeHtml(html: string): string {
  return html
    .replace(/&#34;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** Where a browser on ORIGIN would go when it follows this Location (WHATWG parsing, like a browser). */
function followedBy(location: string | undefined): URL {
  expect(location, 'Location header').to.be.a('string');
  return new URL(location!, `${ORIGIN}/auth/login`);
}

async function isSignedIn(agent: Agent): Promise<boolean> {
  const res = await agent.get('/auth/token');
  expect(res.status).to.be.oneOf([200, 401]);
  return res.status === 200;
}

async function cookieIsSignedIn(t: TestApp, cookie: string): Promise<boolean> {
  const res = await request(t.server).get('/auth/token').set('Cookie', cookie);
  expect(res.status).to.be.oneOf([200, 401]);
  return res.status === 200;
}

/** The `sid` inside a signed `tb.sid=s%3A<sid>.<signature>` cookie. */
function sidOf(cookie: string): string {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
  expect(value.startsWith('s:')).to.equal(true);
  return value.slice(2, value.lastIndexOf('.'));
}

/** Each `<form …>…</form>` on a page. */
function formsOn(html: string): string[] {
  return html.match(/<form\b[\s\S]*?<\/form>/g) ?? [];
}

describe('login', () => {
  let t: TestApp;
  let username: string;
  before(async () => {
    t = await startTestApp();
    username = await registerUser(browser(t.server), uniqueName('login'));
  });
  after(() => t.close());

  it('shows a form with username, password and a hidden _csrf', async () => {
    const res = await request(t.server).get('/auth/login').expect(200).expect('Content-Type', /text\/html/);
    expect(res.text).to.match(/<form method="post" action="\/auth\/login"/);
    expect(res.text).to.match(/name="username"/);
    expect(res.text).to.match(/name="password" type="password"/);
    expect(csrfFrom(res.text)).to.match(/^[0-9a-f]{32,}$/);
  });

  it('signs in with the right password and redirects 302 to /', async () => {
    const agent = browser(t.server);
    const res = await loginUser(agent, username);
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/');
    expect(await isSignedIn(agent)).to.equal(true);
    const home = await agent.get('/').expect(200);
    expect(home.text).to.contain(`Signed in as <strong>${username}</strong>`);
  });

  it('redirects to a same-origin returnTo given as the hidden form field', async () => {
    const agent = browser(t.server);
    const page = await agent.get('/auth/login?returnTo=%2Ftoken%3Fa%3D1').expect(200);
    expect(page.text).to.contain('name="returnTo" value="/token?a=1"');
    const res = await agent
      .post('/auth/login')
      .type('form')
      .send({ _csrf: csrfFrom(page.text), username, password: STRONG_PASSWORD, returnTo: '/token?a=1' });
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/token?a=1');
  });

  it('redirects to a same-origin returnTo given in the query string', async () => {
    const agent = browser(t.server);
    const _csrf = await formToken(agent, '/auth/login');
    const res = await agent.post('/auth/login?returnTo=%2Ftoken').type('form').send({ _csrf, username, password: STRONG_PASSWORD });
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/token');
  });

  it('treats usernames case-insensitively', async () => {
    const agent = browser(t.server);
    const res = await loginUser(agent, username.toUpperCase());
    expect(res.status).to.equal(302);
    expect(await isSignedIn(agent)).to.equal(true);
  });

  it('answers a wrong password with the form again: 401, WWW-Authenticate and the generic message', async () => {
    const agent = browser(t.server);
    const res = await loginUser(agent, username, 'not the right password at all');
    expect(res.status).to.equal(401);
    expect(res.headers['www-authenticate']).to.be.a('string').and.not.equal('');
    expect(res.headers['content-type']).to.match(/text\/html/);
    expect(res.text).to.contain(`<p>${GENERIC_FAILURE}</p>`);
    expect(res.text).to.match(/<form method="post" action="\/auth\/login"/);
    expect(res.text).to.contain(`value="${username}"`);
    expect(await isSignedIn(agent)).to.equal(false);
  });

  it('gives an unknown user exactly the same status, headers and page as a wrong password', async () => {
    // One name, first while it does not exist, then registered: the echoed username is identical too.
    const name = uniqueName('ghost');
    const unknown = await loginUser(browser(t.server), name, 'not the right password at all');
    await registerUser(browser(t.server), name);
    const wrong = await loginUser(browser(t.server), name, 'not the right password at all');

    expect(unknown.status).to.equal(401);
    expect(wrong.status).to.equal(unknown.status);
    expect(wrong.headers['www-authenticate']).to.equal(unknown.headers['www-authenticate']);
    expect(wrong.headers['content-type']).to.equal(unknown.headers['content-type']);
    expect(withoutCsrf(wrong.text)).to.equal(withoutCsrf(unknown.text));
    expect(unknown.text.split(GENERIC_FAILURE)).to.have.length(2);
  });

  it('refuses a disabled user with the right password exactly like an unknown user', async () => {
    const name = uniqueName('disabled');
    const unknown = await loginUser(browser(t.server), name, STRONG_PASSWORD);
    await registerUser(browser(t.server), name);
    const [updated] = await t.database.users.update({ disabled: true }, { where: { usernameKey: name.toLowerCase() } });
    expect(updated).to.equal(1);

    const agent = browser(t.server);
    const disabled = await loginUser(agent, name, STRONG_PASSWORD);
    expect(disabled.status).to.equal(401);
    expect(disabled.status).to.equal(unknown.status);
    expect(disabled.headers['www-authenticate']).to.equal(unknown.headers['www-authenticate']);
    expect(withoutCsrf(disabled.text)).to.equal(withoutCsrf(unknown.text));
    expect(await isSignedIn(agent)).to.equal(false);
  });

  it('does not read credentials from the query string of a POST', async () => {
    const agent = browser(t.server);
    const _csrf = await formToken(agent, '/auth/login');
    const query = new URLSearchParams({ username, password: STRONG_PASSWORD }).toString();
    const res = await agent.post(`/auth/login?${query}`).type('form').send({ _csrf });
    expect(res.status).to.be.within(400, 499);
    expect(res.headers.location).to.equal(undefined);
    expect(await isSignedIn(agent)).to.equal(false);
  });

  it('does not sign in on a GET carrying credentials in the query string', async () => {
    const agent = browser(t.server);
    const query = new URLSearchParams({ username, password: STRONG_PASSWORD }).toString();
    const res = await agent.get(`/auth/login?${query}`);
    expect(res.status).to.equal(200);
    expect(res.text).not.to.contain(`value="${username}"`);
    expect(await isSignedIn(agent)).to.equal(false);
  });

  it('refuses a login without _csrf with 403 and stays signed out', async () => {
    const agent = browser(t.server);
    await agent.get('/auth/login').expect(200);
    const res = await agent.post('/auth/login').type('form').send({ username, password: STRONG_PASSWORD });
    expect(res.status).to.equal(403);
    expect(await isSignedIn(agent)).to.equal(false);
  });

  it('refuses a login without any session at all with 403', async () => {
    const res = await request(t.server).post('/auth/login').type('form').send({ username, password: STRONG_PASSWORD, _csrf: '' });
    expect(res.status).to.equal(403);
    expect(sessionCookie(res)).to.equal(undefined);
  });

  it('refuses a login whose _csrf belongs to another session with 403', async () => {
    const attacker = browser(t.server);
    const foreignToken = await formToken(attacker, '/auth/login');
    const victim = browser(t.server);
    await victim.get('/auth/login').expect(200);
    const res = await victim.post('/auth/login').type('form').send({ _csrf: foreignToken, username, password: STRONG_PASSWORD });
    expect(res.status).to.equal(403);
    expect(await isSignedIn(victim)).to.equal(false);
  });

  it('sends a signed-in visitor of the login page on to returnTo', async () => {
    const agent = browser(t.server);
    await loginUser(agent, username);
    const res = await agent.get('/auth/login?returnTo=%2Ftoken');
    expect(res.status).to.be.oneOf([302, 303]);
    expect(res.headers.location).to.equal('/token');
  });
});

describe('returnTo never leaves the site', () => {
  const evil = [
    '//evil.example',
    '///evil.example',
    '/\\evil.example',
    '/\\/evil.example',
    'https://evil.example',
    'http:evil.example',
    'javascript:alert(1)',
    'JaVaScRiPt:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    '\t//evil.example',
    '/\t/evil.example',
    '/\n/evil.example',
    ' //evil.example',
    '%2F%2Fevil.example',
    '/.//evil.example',
    '/./\\evil.example',
    '/%2e//evil.example',
    '/%2E%2E//evil.example',
    '/a/..//evil.example',
    '/token/../..//evil.example',
    'evil.example',
    '',
  ];

  describe('safeReturnTo', () => {
    for (const value of evil) {
      it(`turns ${JSON.stringify(value)} into /`, () => {
        expect(safeReturnTo(value)).to.equal('/');
      });
    }

    it('keeps a local path with query and fragment', () => {
      expect(safeReturnTo('/token?x=1#top')).to.equal('/token?x=1#top');
    });

    it('keeps percent-encoded slashes encoded, so a browser stays on this site', () => {
      const kept = safeReturnTo('/%2F%2Fevil.example');
      expect(followedBy(kept).origin).to.equal(ORIGIN);
      expect(kept.startsWith('//')).to.equal(false);
    });

    it('refuses non-strings, arrays and over-long values', () => {
      expect(safeReturnTo(undefined)).to.equal('/');
      expect(safeReturnTo(['/token'])).to.equal('/');
      expect(safeReturnTo({ toString: () => '/token' })).to.equal('/');
      expect(safeReturnTo(`/${'a'.repeat(600)}`)).to.equal('/');
    });
  });

  describe('through the login form', () => {
    let t: TestApp;
    let username: string;
    before(async () => {
      t = await startTestApp();
      username = await registerUser(browser(t.server), uniqueName('redir'));
    });
    after(() => t.close());

    const hostile = ['//evil.example', '/\\evil.example', 'https://evil.example', 'javascript:alert(1)', '\t//evil.example', '/.//evil.example', '/%2e//evil.example', '/%2F%2Fevil.example'];

    for (const value of hostile) {
      it(`keeps the browser on this site after login with returnTo=${JSON.stringify(value)} in the form`, async () => {
        const agent = browser(t.server);
        const _csrf = await formToken(agent, '/auth/login');
        const res = await agent.post('/auth/login').type('form').send({ _csrf, username, password: STRONG_PASSWORD, returnTo: value });
        expect(res.status).to.equal(302);
        expect(followedBy(res.headers.location).origin).to.equal(ORIGIN);
        expect(res.headers.location).to.match(/^\/(?![/\\])/);
      });
    }

    it('keeps the browser on this site when the hostile returnTo comes in the query string', async () => {
      const agent = browser(t.server);
      const _csrf = await formToken(agent, '/auth/login');
      const res = await agent.post(`/auth/login?returnTo=${encodeURIComponent('/.//evil.example')}`).type('form').send({ _csrf, username, password: STRONG_PASSWORD });
      expect(res.status).to.equal(302);
      expect(res.headers.location).to.equal('/');
    });

    it('puts only a safe value into the login form hidden field', async () => {
      const page = await request(t.server).get(`/auth/login?returnTo=${encodeURIComponent('//evil.example')}`).expect(200);
      expect(page.text).to.contain('name="returnTo" value="/"');
      expect(page.text).not.to.contain('evil.example');
    });

    it('keeps a signed-in visitor of the login page on this site', async () => {
      const agent = browser(t.server);
      await loginUser(agent, username);
      const res = await agent.get(`/auth/login?returnTo=${encodeURIComponent('/%2e//evil.example')}`);
      expect(res.headers.location).to.equal('/');
    });

    it('keeps the browser on this site after registration with a hostile returnTo', async () => {
      const agent = browser(t.server);
      const _csrf = await formToken(agent, '/auth/register');
      const res = await agent
        .post('/auth/register')
        .type('form')
        .send({ _csrf, username: uniqueName('reg'), password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD, returnTo: '/.//evil.example' });
      expect(res.status).to.equal(302);
      expect(res.headers.location).to.equal('/');
    });
  });
});

describe('logout', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  async function signedInBrowser(): Promise<{ agent: Agent; cookie: string }> {
    const username = await registerUser(browser(t.server), uniqueName('bye'));
    const agent = browser(t.server);
    const res = await loginUser(agent, username);
    expect(res.status).to.equal(302);
    return { agent, cookie: sessionCookie(res)! };
  }

  it('destroys the session on POST with the _csrf from the page and redirects to /', async () => {
    const { agent, cookie } = await signedInBrowser();
    const home = await agent.get('/').expect(200);
    const res = await agent.post('/auth/logout').type('form').send({ _csrf: csrfFrom(home.text) });
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/');
    expect(await isSignedIn(agent)).to.equal(false);
    expect(await cookieIsSignedIn(t, cookie)).to.equal(false);
  });

  it('removes the session row from the store', async () => {
    const { agent, cookie } = await signedInBrowser();
    const sid = sidOf(cookie);
    expect(await t.database.sessions.findByPk(sid)).not.to.equal(null);
    const _csrf = await formToken(agent, '/');
    await agent.post('/auth/logout').type('form').send({ _csrf }).expect(302);
    expect(await t.database.sessions.findByPk(sid)).to.equal(null);
  });

  it('tells the browser to drop the session cookie', async () => {
    const { agent } = await signedInBrowser();
    const _csrf = await formToken(agent, '/');
    const res = await agent.post('/auth/logout').type('form').send({ _csrf }).expect(302);
    const cleared = ((res.headers['set-cookie'] as unknown as string[] | undefined) ?? []).find((c) => c.startsWith('tb.sid='));
    expect(cleared).to.match(/^tb\.sid=;/);
    expect(cleared).to.match(/Expires=Thu, 01 Jan 1970/);
  });

  it('refuses a logout without _csrf with 403 and stays signed in', async () => {
    const { agent, cookie } = await signedInBrowser();
    const res = await agent.post('/auth/logout').type('form').send({});
    expect(res.status).to.equal(403);
    expect(await isSignedIn(agent)).to.equal(true);
    expect(await t.database.sessions.findByPk(sidOf(cookie))).not.to.equal(null);
  });

  it('refuses a logout with another session’s _csrf with 403', async () => {
    const { agent } = await signedInBrowser();
    const foreign = await formToken(browser(t.server), '/auth/login');
    const res = await agent.post('/auth/logout').type('form').send({ _csrf: foreign });
    expect(res.status).to.equal(403);
    expect(await isSignedIn(agent)).to.equal(true);
  });

  it('does not sign out on GET /auth/logout', async () => {
    const { agent } = await signedInBrowser();
    const res = await agent.get('/auth/logout');
    expect(res.status).to.equal(404);
    expect(await isSignedIn(agent)).to.equal(true);
  });
});

describe('token page', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('sends a signed-out visitor to the login page with returnTo=/token', async () => {
    const res = await request(t.server).get('/token');
    expect(res.status).to.equal(302);
    expect(res.headers.location).to.equal('/auth/login?returnTo=%2Ftoken');
  });

  it('shows a signed-in user a token with its decoded header, payload and expiry, never cached', async () => {
    const agent = browser(t.server);
    const username = await registerUser(agent, uniqueName('page'));
    const before = Math.floor(Date.now() / 1000);
    const res = await agent.get('/token').expect(200).expect('Content-Type', /text\/html/);
    expect(res.headers['cache-control']).to.contain('no-store');

    const token = /<textarea id="token"[^>]*>([^<]+)<\/textarea>/.exec(res.text)?.[1];
    expect(token).to.match(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const [headerPart, payloadPart] = token!.split('.');
    const header = JSON.parse(Buffer.from(headerPart!, 'base64url').toString('utf8'));
    const payload = JSON.parse(Buffer.from(payloadPart!, 'base64url').toString('utf8'));
    expect(header).to.include({ alg: 'HS256', typ: 'JWT' });
    expect(payload.username).to.equal(username);
    expect(payload.exp - payload.iat).to.equal(21600);
    expect(payload.iat).to.be.within(before - 1, before + 5);

    const shown = [...res.text.matchAll(/<pre class="json"><code>([\s\S]*?)<\/code><\/pre>/g)].map((m) => JSON.parse(unescapeHtml(m[1]!)));
    expect(shown).to.deep.equal([header, payload]);

    const expiry = new Date(payload.exp * 1000).toISOString();
    expect(res.text).to.contain(`datetime="${expiry}"`);
    expect(res.text).to.match(/in <span id="expires-in"[^>]*>(5 h 59 min|6 h)<\/span>/);

    const me = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
    expect(me.body.username).to.equal(username);
  });
});

describe('token page behind PUBLIC_URL', () => {
  let t: TestApp;
  before(async () => {
    // Forwarded headers are trusted here, to show they do not decide the link either.
    t = await startTestApp({ env: { PUBLIC_URL: 'https://tokens.example.com:8443/', TRUST_PROXY: 'true' } });
  });
  after(() => t.close());

  it('builds the curl line from PUBLIC_URL, never from a forged Host or X-Forwarded-Host header', async () => {
    const agent = browser(t.server);
    await registerUser(agent, uniqueName('curl'));
    const res = await agent
      .get('/token')
      .set('Host', 'evil.example')
      .set('X-Forwarded-Host', 'evil-forwarded.example')
      .set('X-Forwarded-Proto', 'http')
      .expect(200);
    const token = /<textarea id="token"[^>]*>([^<]+)<\/textarea>/.exec(res.text)?.[1];
    const curl = /<code id="curl-command">([^<]*)<\/code>/.exec(res.text)?.[1];
    expect(unescapeHtml(curl ?? '')).to.equal(`curl -H "Authorization: Bearer ${token}" https://tokens.example.com:8443/api/me`);
    expect(res.text).not.to.contain('evil');
  });
});

describe('security headers on pages', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  for (const path of ['/', '/auth/login', '/auth/register', '/no-such-page']) {
    it(`sends a strict CSP, nosniff and no X-Powered-By on ${path}`, async () => {
      const res = await request(t.server).get(path);
      expect(res.status).to.be.oneOf([200, 404]);
      const csp = res.headers['content-security-policy'] as string | undefined;
      expect(csp).to.be.a('string');
      const directives = new Map(csp!.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name, values.join(' ')]));
      expect(directives.get('default-src')).to.equal("'none'");
      expect(directives.get('script-src')).to.equal("'self'");
      expect(directives.get('frame-ancestors')).to.equal("'none'");
      expect(directives.get('form-action')).to.equal("'self'");
      expect(csp).not.to.contain('unsafe-inline');
      expect(res.headers['x-content-type-options']).to.equal('nosniff');
      expect(res.headers).not.to.have.property('x-powered-by');
    });
  }

  it('writes no inline script or style on any page (the CSP would block them)', async () => {
    const agent = browser(t.server);
    await registerUser(agent, uniqueName('csp'));
    for (const path of ['/', '/token', '/auth/register', '/nope']) {
      const res = await agent.get(path);
      expect(res.text, path).not.to.match(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(res.text, path).not.to.match(/\sstyle="/);
      expect(res.text, path).not.to.match(/\son[a-z]+="/);
    }
  });
});

describe('every form carries the session’s _csrf', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  async function expectEveryFormHasCsrf(agent: Agent, path: string, html: string): Promise<string[]> {
    const forms = formsOn(html);
    const tokens: string[] = [];
    for (const form of forms) {
      const token = /<input type="hidden" name="_csrf" value="([^"]+)">/.exec(form)?.[1];
      expect(token, `a form on ${path} without _csrf:\n${form}`).to.be.a('string');
      tokens.push(token!);
    }
    return tokens;
  }

  it('on the anonymous pages, including failed-login and failed-registration re-renders', async () => {
    const agent = browser(t.server);
    const pages: Array<[string, string]> = [];
    for (const path of ['/', '/auth/login', '/auth/register', '/auth/login?returnTo=%2Ftoken']) {
      pages.push([path, (await agent.get(path)).text]);
    }
    const _csrf = csrfFrom(pages[1]![1]);
    pages.push(['failed login', (await agent.post('/auth/login').type('form').send({ _csrf, username: 'nobody-here', password: 'wrong password 123' })).text]);
    pages.push(['failed registration', (await agent.post('/auth/register').type('form').send({ _csrf, username: 'x', password: 'short', confirmPassword: 'short' })).text]);
    let formCount = 0;
    for (const [path, html] of pages) {
      const tokens = await expectEveryFormHasCsrf(agent, path, html);
      formCount += tokens.length;
      for (const token of tokens) expect(token).to.equal(_csrf);
    }
    expect(formCount).to.be.at.least(5);
  });

  it('on the signed-in pages, with a token that this session accepts', async () => {
    const agent = browser(t.server);
    await registerUser(agent, uniqueName('forms'));
    const seen = new Set<string>();
    let formCount = 0;
    for (const path of ['/', '/token', '/auth/register', '/no-such-page', '/account']) {
      const res = await agent.get(path);
      // /account belongs to the account pages; checked here as soon as it exists.
      if (path === '/account' && res.status === 404) continue;
      for (const token of await expectEveryFormHasCsrf(agent, path, res.text)) {
        seen.add(token);
        formCount += 1;
      }
    }
    expect(formCount).to.be.at.least(4);
    expect(seen.size).to.equal(1);
    const res = await agent.post('/auth/logout').type('form').send({ _csrf: [...seen][0] });
    expect(res.status).to.equal(302);
  });
});
