import { expect } from 'chai';
import { startTestApp, tempSqliteUrl, type TestApp } from './helpers/app.js';
import { browser, formToken, loginUser, registerUser, STRONG_PASSWORD, uniqueName, type Agent } from './helpers/browser.js';

const GENERIC_FAILURE = 'Invalid username or password';
const WRONG = 'definitely not the password';

/** A browser whose requests come from `ip` (the app trusts X-Forwarded-For in these tests). */
function from(t: TestApp, ip: string): Agent {
  return browser(t.server).set('X-Forwarded-For', ip);
}

let addressCounter = 0;
/** A fresh documentation address (198.18.0.0/15) per call, so tests never share an address counter. */
function freshIp(): string {
  addressCounter += 1;
  return `198.18.${Math.floor(addressCounter / 250)}.${(addressCounter % 250) + 1}`;
}

function withoutCsrf(html: string): string {
  return html.replace(/name="_csrf" value="[^"]*"/g, 'name="_csrf" value=""');
}

async function isSignedIn(agent: Agent): Promise<boolean> {
  const res = await agent.get('/auth/token');
  expect(res.status).to.be.oneOf([200, 401]);
  return res.status === 200;
}

function expectThrottledPage(res: { status: number; headers: Record<string, string>; text: string }, maxSeconds: number) {
  expect(res.status, res.text).to.equal(429);
  expect(res.headers['retry-after'], 'Retry-After').to.match(/^\d+$/);
  expect(Number(res.headers['retry-after'])).to.be.within(1, maxSeconds);
  expect(res.headers['content-type']).to.match(/text\/html/);
  expect(res.text).to.contain(GENERIC_FAILURE);
  expect(res.text).to.match(/<form method="post" action="\/auth\/login"/);
}

describe('login throttling per account (defaults: 5 failures in 15 minutes)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { TRUST_PROXY: 'true' } });
  });
  after(() => t.close());

  it('answers the 6th attempt after 5 wrong passwords with 429, Retry-After and the generic login page', async () => {
    const username = await registerUser(browser(t.server));
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) statuses.push((await loginUser(from(t, freshIp()), username, WRONG)).status);
    expect(statuses).to.deep.equal([401, 401, 401, 401, 401]);

    const sixth = await loginUser(from(t, freshIp()), username, WRONG);
    expectThrottledPage(sixth, 15 * 60);
    expect(sixth.text).to.contain(`value="${username}"`);
  });

  it('refuses the right password while the account is blocked, from any address', async () => {
    const username = await registerUser(browser(t.server));
    for (let i = 0; i < 5; i += 1) await loginUser(from(t, freshIp()), username, WRONG);

    const agent = from(t, freshIp());
    const res = await loginUser(agent, username, STRONG_PASSWORD);
    expectThrottledPage(res, 15 * 60);
    expect(await isSignedIn(agent)).to.equal(false);
  });

  it('throttles an unknown account exactly like a known one (no enumeration)', async () => {
    const known = await registerUser(browser(t.server), uniqueName('known'));
    const unknown = uniqueName('ghost').replace(/./, 'k'); // same length as known, never registered
    expect(unknown.length).to.equal(known.length);
    const ip = freshIp();
    const knownStatuses: number[] = [];
    const unknownStatuses: number[] = [];
    for (let i = 0; i < 6; i += 1) {
      knownStatuses.push((await loginUser(from(t, ip), known, WRONG)).status);
      unknownStatuses.push((await loginUser(from(t, ip), unknown, WRONG)).status);
    }
    expect(knownStatuses).to.deep.equal([401, 401, 401, 401, 401, 429]);
    expect(unknownStatuses).to.deep.equal(knownStatuses);

    const a = await loginUser(from(t, freshIp()), known, STRONG_PASSWORD);
    const b = await loginUser(from(t, freshIp()), unknown, STRONG_PASSWORD);
    expect(a.status).to.equal(429);
    expect(b.status).to.equal(a.status);
    expect(Math.abs(Number(a.headers['retry-after']) - Number(b.headers['retry-after']))).to.be.at.most(2);
    const page = (html: string, name: string) => withoutCsrf(html).replaceAll(name, 'NAME').replace(/in about \d+ minutes?/, 'in about N minutes');
    expect(page(b.text, unknown)).to.equal(page(a.text, known));
  });

  it('counts a block per account: another account from the same address is not blocked', async () => {
    const blocked = await registerUser(browser(t.server));
    const bystander = await registerUser(browser(t.server));
    const ip = freshIp();
    for (let i = 0; i < 5; i += 1) await loginUser(from(t, ip), blocked, WRONG);
    expect((await loginUser(from(t, ip), blocked, STRONG_PASSWORD)).status).to.equal(429);
    expect((await loginUser(from(t, ip), bystander, STRONG_PASSWORD)).status).to.equal(302);
  });

  it('clears the account count after a successful sign-in', async () => {
    const username = await registerUser(browser(t.server));
    for (let i = 0; i < 4; i += 1) await loginUser(from(t, freshIp()), username, WRONG);
    expect((await loginUser(from(t, freshIp()), username, STRONG_PASSWORD)).status).to.equal(302);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) statuses.push((await loginUser(from(t, freshIp()), username, WRONG)).status);
    expect(statuses).to.deep.equal([401, 401, 401, 401, 401]);
  });

  /** `n` browsers, each with a login form already open, from addresses of their own. */
  async function openForms(n: number, ip: () => string = freshIp) {
    return Promise.all(
      Array.from({ length: n }, async () => {
        const agent = from(t, ip());
        return { agent, _csrf: await formToken(agent, '/auth/login') };
      }),
    );
  }

  async function failedRowsFor(username: string): Promise<number> {
    const user = await t.database.users.findOne({ where: { usernameKey: username.toLowerCase() } });
    return t.database.auditEvents.count({ where: { userId: user!.id, event: 'sign_in_failed' } });
  }

  it('checks exactly 5 passwords when 40 wrong guesses arrive at once, and answers the other 35 with 429', async () => {
    const username = await registerUser(browser(t.server));
    const forms = await openForms(40);
    const results = await Promise.all(forms.map(({ agent, _csrf }) => agent.post('/auth/login').type('form').send({ _csrf, username, password: WRONG })));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 401).length, statuses.join(',')).to.equal(5);
    expect(statuses.filter((s) => s === 429).length, statuses.join(',')).to.equal(35);
    expect(await failedRowsFor(username), 'password checks that failed (audit rows)').to.equal(5);
    expect((await loginUser(from(t, freshIp()), username, STRONG_PASSWORD)).status).to.equal(429);
  });

  it('signs in all of 40 concurrent correct sign-ins to one account', async () => {
    const username = await registerUser(browser(t.server));
    const forms = await openForms(40);
    const results = await Promise.all(forms.map(({ agent, _csrf }) => agent.post('/auth/login').type('form').send({ _csrf, username, password: STRONG_PASSWORD })));
    expect(results.map((r) => r.status)).to.deep.equal(Array(40).fill(302));
    expect(await failedRowsFor(username)).to.equal(0);
    for (const { agent } of forms.slice(0, 3)) expect(await isSignedIn(agent)).to.equal(true);
  });
});

describe('login throttling per address', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { TRUST_PROXY: 'true', LOGIN_IP_MAX_FAILURES: '8' } });
  });
  after(() => t.close());

  it('blocks an address that sprays wrong passwords over many accounts, but not other addresses', async () => {
    const victims: string[] = [];
    for (let i = 0; i < 9; i += 1) victims.push(i % 2 ? await registerUser(browser(t.server)) : uniqueName('nobody'));
    const sprayer = freshIp();
    const statuses: number[] = [];
    for (let i = 0; i < 8; i += 1) statuses.push((await loginUser(from(t, sprayer), victims[i]!, WRONG)).status);
    expect(statuses).to.deep.equal(Array(8).fill(401));

    const ninth = await loginUser(from(t, sprayer), victims[8]!, WRONG);
    expectThrottledPage(ninth, 15 * 60);
    // The right password of a real account is refused from that address too.
    const real = victims[1]!;
    expect((await loginUser(from(t, sprayer), real, STRONG_PASSWORD)).status).to.equal(429);
    // The accounts themselves were tried once each and are not blocked elsewhere.
    expect((await loginUser(from(t, freshIp()), real, STRONG_PASSWORD)).status).to.equal(302);
  });

  it('does not count successful sign-ins against the address', async () => {
    const username = await registerUser(browser(t.server));
    const ip = freshIp();
    for (let i = 0; i < 12; i += 1) {
      expect((await loginUser(from(t, ip), username, STRONG_PASSWORD)).status, `sign-in ${i + 1}`).to.equal(302);
    }
  });

  it('checks exactly 8 passwords from one address when 20 guesses arrive at once, and answers the other 12 with 429', async () => {
    const ip = freshIp();
    const agents = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const agent = from(t, ip);
        return { agent, _csrf: await formToken(agent, '/auth/login') };
      }),
    );
    const results = await Promise.all(
      agents.map(({ agent, _csrf }) => agent.post('/auth/login').type('form').send({ _csrf, username: uniqueName('spray'), password: WRONG })),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 401).length, statuses.join(',')).to.equal(8);
    expect(statuses.filter((s) => s === 429).length, statuses.join(',')).to.equal(12);
  });
});

describe('login throttling limits are configurable', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { TRUST_PROXY: 'true', LOGIN_ACCOUNT_MAX_FAILURES: '2', LOGIN_ACCOUNT_WINDOW: '1m' } });
  });
  after(() => t.close());

  it('blocks after LOGIN_ACCOUNT_MAX_FAILURES failures for at most LOGIN_ACCOUNT_WINDOW', async () => {
    const username = await registerUser(browser(t.server));
    expect((await loginUser(from(t, freshIp()), username, WRONG)).status).to.equal(401);
    expect((await loginUser(from(t, freshIp()), username, WRONG)).status).to.equal(401);
    const third = await loginUser(from(t, freshIp()), username, STRONG_PASSWORD);
    expectThrottledPage(third, 60);
  });
});

describe('a login block survives a restart', () => {
  let file: ReturnType<typeof tempSqliteUrl>;
  after(() => file.cleanup());

  it('still refuses the right password on a new app instance on the same database file', async () => {
    file = tempSqliteUrl();
    const first = await startTestApp({ databaseUrl: file.url });
    const username = await registerUser(browser(first.server));
    for (let i = 0; i < 5; i += 1) expect((await loginUser(browser(first.server), username, WRONG)).status).to.equal(401);
    expect((await loginUser(browser(first.server), username, STRONG_PASSWORD)).status).to.equal(429);
    await first.close();

    const second = await startTestApp({ databaseUrl: file.url });
    try {
      const agent = browser(second.server);
      const res = await loginUser(agent, username, STRONG_PASSWORD);
      expectThrottledPage(res, 15 * 60);
      expect(await isSignedIn(agent)).to.equal(false);
    } finally {
      await second.close();
    }
  });
});

describe('registration throttling per address', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { TRUST_PROXY: 'true', REGISTER_IP_MAX: '3', REGISTER_IP_WINDOW: '10m' } });
  });
  after(() => t.close());

  async function register(agent: Agent, username = uniqueName('reg')) {
    const _csrf = await formToken(agent, '/auth/register');
    return agent.post('/auth/register').type('form').send({ _csrf, username, password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD });
  }

  it('allows REGISTER_IP_MAX accounts per address, then answers 429 with Retry-After and creates nothing', async () => {
    const ip = freshIp();
    for (let i = 0; i < 3; i += 1) expect((await register(from(t, ip))).status).to.equal(302);
    const name = uniqueName('reg');
    const res = await register(from(t, ip), name);
    expect(res.status).to.equal(429);
    expect(Number(res.headers['retry-after'])).to.be.within(1, 600);
    expect(res.text).to.match(/<form method="post" action="\/auth\/register"/);
    expect(res.text).to.contain(`value="${name}"`);
    expect(await t.database.users.count({ where: { usernameKey: name.toLowerCase() } })).to.equal(0);
    expect((await register(from(t, freshIp()))).status, 'another address').to.equal(302);
  });

  it('does not count registrations refused for their form (weak password, mismatch) against the address', async () => {
    const ip = freshIp();
    for (let i = 0; i < 4; i += 1) {
      const agent = from(t, ip);
      const _csrf = await formToken(agent, '/auth/register');
      const res = await agent.post('/auth/register').type('form').send({ _csrf, username: uniqueName('weak'), password: 'password', confirmPassword: 'password' });
      expect(res.status).to.equal(400);
    }
    for (let i = 0; i < 3; i += 1) expect((await register(from(t, ip))).status).to.equal(302);
  });

  it('counts attempts at taken names, so probing which names exist is throttled too', async () => {
    const ip = freshIp();
    const taken = await registerUser(browser(t.server).set('X-Forwarded-For', freshIp()));
    for (let i = 0; i < 3; i += 1) expect((await register(from(t, ip), taken)).status).to.equal(409);
    const probe = await register(from(t, ip), taken);
    expect(probe.status).to.equal(429);
    expect(probe.text).to.not.contain('taken');
    expect((await register(from(t, ip))).status, 'a new name from that address too').to.equal(429);
  });

  it('creates no more than REGISTER_IP_MAX accounts when 10 registrations arrive at once', async () => {
    const ip = freshIp();
    const agents = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const agent = from(t, ip);
        return { agent, _csrf: await formToken(agent, '/auth/register') };
      }),
    );
    const results = await Promise.all(
      agents.map(({ agent, _csrf }) =>
        agent.post('/auth/register').type('form').send({ _csrf, username: uniqueName('burst'), password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD }),
      ),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 302).length, statuses.join(',')).to.equal(3);
    expect(statuses.filter((s) => s === 429).length, statuses.join(',')).to.equal(7);
  });
});
