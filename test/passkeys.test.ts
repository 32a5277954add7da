import { expect } from 'chai';
import { generate } from 'otplib';
import { startTestApp, type TestApp } from './helpers/app.js';
import { browser, csrfFrom, registerUser, STRONG_PASSWORD, type Agent } from './helpers/browser.js';
import { TestClock } from './helpers/clock.js';

/** The outer shape of an authentication answer for a credential this app never registered. */
const FOREIGN_ANSWER = {
  id: 'bm8tc3VjaC1jcmVkZW50aWFs',
  rawId: 'bm8tc3VjaC1jcmVkZW50aWFs',
  type: 'public-key',
  response: { clientDataJSON: 'e30', authenticatorData: 'AA', signature: 'AA' },
  clientExtensionResults: {},
};

async function csrfOf(agent: Agent, path = '/auth/login'): Promise<string> {
  return csrfFrom((await agent.get(path).expect(200)).text);
}

/** The passkey endpoints without a browser: what the HTTP side refuses before and around the ceremony (the ceremony itself: test/browser/passkeys.test.ts). */
describe('passkey endpoints', () => {
  const clock = new TestClock();
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ clock: clock.read, env: { LOGIN_IP_MAX_FAILURES: '3', LOGIN_IP_WINDOW: '15m' } });
  });
  after(() => t.close());

  it('gives sign-in options for discoverable credentials with PUBLIC_URL\'s host as RP ID, and needs the CSRF token', async () => {
    const agent = browser(t.server);
    const csrf = await csrfOf(agent);
    // A JSON endpoint: its refusals are JSON even when the client asks for a page.
    const refused = await agent.post('/auth/passkey/options').set('accept', 'text/html').send({}).expect(403).expect('content-type', /application\/json/);
    expect(refused.body).to.have.property('error').that.is.a('string');
    const options = (await agent.post('/auth/passkey/options').set('x-csrf-token', csrf).send({}).expect(200)).body as { rpId: string; challenge: string; allowCredentials: unknown[]; userVerification: string };
    expect(options.rpId).to.equal(new URL(t.config.publicUrl).hostname);
    expect(options.allowCredentials).to.deep.equal([]);
    expect(options.userVerification).to.equal('preferred');
    expect(Buffer.from(options.challenge, 'base64url').length).to.be.at.least(16);
  });

  it('answers an answer without a ceremony, or of the wrong shape, with 400 and no session', async () => {
    const agent = browser(t.server);
    const csrf = await csrfOf(agent);
    expect((await agent.post('/auth/passkey').set('x-csrf-token', csrf).send({ response: FOREIGN_ANSWER }).expect(400)).body).to.include({ error: 'bad_request' });
    await agent.post('/auth/passkey/options').set('x-csrf-token', csrf).send({}).expect(200);
    await agent.post('/auth/passkey').set('x-csrf-token', csrf).send({ response: { id: 5 } }).expect(400);
    await agent.get('/auth/token').expect(401);
  });

  it('refuses an unknown credential with 401, audits it, and throttles the address like password failures', async () => {
    const agent = browser(t.server);
    const csrf = await csrfOf(agent);
    const attempt = async () => {
      await agent.post('/auth/passkey/options').set('x-csrf-token', csrf).send({}).expect(200);
      return agent.post('/auth/passkey').set('x-csrf-token', csrf).send({ response: FOREIGN_ANSWER });
    };
    for (let i = 0; i < 3; i += 1) expect((await attempt()).body).to.include({ error: 'passkey_failed' });
    const blocked = await attempt();
    expect(blocked.status).to.equal(429);
    expect(Number(blocked.headers['retry-after'])).to.be.above(0);
    expect(await t.database.auditEvents.count({ where: { event: 'passkey_failed' } })).to.be.at.least(3);
    // The same address's password sign-ins are blocked too: one counter.
    const form = browser(t.server);
    const name = await registerUser(browser(t.server));
    const _csrf = await csrfOf(form);
    try {
      expect((await form.post('/auth/login').type('form').send({ _csrf, username: name, password: STRONG_PASSWORD })).status).to.equal(429);
    } finally {
      clock.advance(15 * 60_000 + 1000);
    }
  });

  it('lets only a signed-in user ask to add one, with the password once the sign-in is older than 5 minutes', async () => {
    const anonymous = browser(t.server);
    const anonCsrf = await csrfOf(anonymous);
    expect((await anonymous.post('/account/passkeys/options').set('x-csrf-token', anonCsrf).send({}).expect(401)).body).to.include({ error: 'not_signed_in' });

    const agent = browser(t.server);
    const name = await registerUser(agent);
    const csrf = await csrfOf(agent, '/account');
    const fresh = (await agent.post('/account/passkeys/options').set('x-csrf-token', csrf).send({}).expect(200)).body as { rp: { id: string }; user: { name: string; id: string }; authenticatorSelection: { residentKey: string } };
    expect(fresh.rp.id).to.equal(new URL(t.config.publicUrl).hostname);
    expect(fresh.user.name).to.equal(name);
    expect(fresh.user.id, 'a random user handle, not the user id').to.not.match(/^\d+$/);
    expect(fresh.authenticatorSelection.residentKey).to.equal('required');

    clock.advance(5 * 60_000 + 1000);
    expect((await agent.post('/account/passkeys/options').set('x-csrf-token', csrf).send({}).expect(401)).body).to.include({ error: 'password_required' });
    await agent.post('/account/passkeys/options').set('x-csrf-token', csrf).send({ currentPassword: 'not the password' }).expect(401);
    await agent.post('/account/passkeys/options').set('x-csrf-token', csrf).send({ currentPassword: STRONG_PASSWORD }).expect(200);
    // An answer to nothing, or a removal of a passkey the user does not have.
    await agent.post('/account/passkeys').set('x-csrf-token', csrf).send({ response: FOREIGN_ANSWER, name: 'x' }).expect(400);
    await agent.post('/account/passkeys/options').set('x-csrf-token', csrf).send({ currentPassword: STRONG_PASSWORD }).expect(200);
    expect((await agent.post('/account/passkeys').set('x-csrf-token', csrf).send({ response: FOREIGN_ANSWER, name: 'x' }).expect(400)).body).to.include({ error: 'passkey_failed' });
    await agent.post('/account/passkeys/no-such-id/remove').type('form').send({ _csrf: csrf }).expect(404);
  });

  it('answers a wrong password when adding one with 401, and the next after 3 with 429 and Retry-After', async () => {
    const agent = browser(t.server);
    await registerUser(agent);
    const csrf = await csrfOf(agent, '/account');
    // Past the earlier tests' failures from this address, and past the 5 minutes of a recent sign-in.
    clock.advance(15 * 60_000 + 1000);
    try {
      for (let i = 0; i < 3; i += 1) {
        expect((await agent.post('/account/passkeys/options').set('x-csrf-token', csrf).send({ currentPassword: 'not the password' }).expect(401)).body)
          .to.deep.equal({ error: 'password_required', message: 'Enter your current password to add a passkey.' });
      }
      const blocked = await agent.post('/account/passkeys/options').set('x-csrf-token', csrf).send({ currentPassword: 'not the password' }).expect(429);
      expect(blocked.body).to.deep.equal({ error: 'too_many_requests', message: 'Too many wrong passwords: try again later.' });
      expect(Number(blocked.headers['retry-after'])).to.be.above(0);
    } finally {
      clock.advance(15 * 60_000 + 1000);
    }
  });

  it('answers a passkey second step more than 5 minutes after the password with 401 expired', async () => {
    const owner = browser(t.server);
    const name = await registerUser(owner);
    const setUp = await owner.get('/account/2fa').expect(200);
    const secret = /data-totp-secret>([A-Z2-7]+)</.exec(setUp.text)![1]!;
    const code = await generate({ secret, epoch: Math.floor(clock.read() / 1000) });
    await owner.post('/account/2fa').type('form').send({ _csrf: csrfFrom(setUp.text), code, currentPassword: STRONG_PASSWORD }).expect(200);

    const agent = browser(t.server);
    const _csrf = await csrfOf(agent);
    await agent.post('/auth/login').type('form').send({ _csrf, username: name, password: STRONG_PASSWORD }).expect(302);
    const csrf = await csrfOf(agent, '/auth/2fa');
    await agent.post('/auth/passkey/options').set('x-csrf-token', csrf).send({}).expect(200);
    clock.advance(5 * 60_000 + 1000);
    expect((await agent.post('/auth/passkey').set('x-csrf-token', csrf).send({ response: FOREIGN_ANSWER }).expect(401)).body)
      .to.deep.equal({ error: 'expired', message: 'That took too long: sign in again.' });
    await agent.get('/auth/token').expect(401);
  });
});
