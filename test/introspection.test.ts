import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { ApiClientService, type NewApiClient } from '../services/api-clients.js';
import { AuditLog } from '../services/audit-log.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { csrfFrom, userWithToken } from './helpers/browser.js';
import { TestClock } from './helpers/clock.js';

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
const CLI = { ip: null, userAgent: 'test' };

function clientsOf(t: TestApp): ApiClientService {
  return new ApiClientService({ clients: t.database.apiClients, audit: new AuditLog(t.database, Date.now), clock: Date.now });
}

/** POST /auth/introspect as `client` (or with the given Authorization value) with a form body. */
function introspect(t: TestApp, auth: NewApiClient | string | null, form: Record<string, string> | string = {}) {
  const req = request(t.server).post('/auth/introspect').type('form');
  if (auth) req.set('Authorization', typeof auth === 'string' ? auth : basic(auth.clientId, auth.clientSecret));
  return req.send(form);
}

for (const alg of ['HS256', 'ES256'] as const) {
  describe(`POST /auth/introspect (RFC 7662) with ${alg}`, () => {
    const clock = new TestClock();
    let t: TestApp;
    let client: NewApiClient;
    let token: string;
    let username: string;
    before(async () => {
      t = await startTestApp({ env: { JWT_ALGORITHM: alg }, clock: clock.read });
      client = await clientsOf(t).create(`resource-server-${alg}`, CLI);
      ({ token, username } = await userWithToken(t.server));
    });
    after(() => t.close());

    it('answers a good token with its claims, the user as they are now and token_type, never cached', async () => {
      const res = await introspect(t, client, { token, token_type_hint: 'access_token' }).expect(200).expect('Content-Type', /application\/json/);
      expect(res.headers['cache-control']).to.equal('no-store');
      const claims = jwt.decode(token) as Record<string, unknown>;
      expect(res.body).to.deep.equal({
        active: true,
        sub: claims.sub,
        username,
        roles: [],
        exp: claims.exp,
        iat: claims.iat,
        iss: t.config.jwt.issuer,
        aud: t.config.jwt.audience,
        jti: claims.jti,
        sid: claims.sid,
        token_type: 'Bearer',
      });
    });

    it('reports the current roles, not the ones the token was minted with', async () => {
      const { token: own, username: name } = await userWithToken(t.server);
      await t.database.users.update({ roles: ['admin'] }, { where: { username: name } });
      expect((await introspect(t, client, { token: own }).expect(200)).body).to.include({ active: true, username: name }).and.deep.include({ roles: ['admin'] });
    });

    it('answers {"active": false} and nothing more for garbage, a missing token, a repeated field and a forged signature', async () => {
      const [h, p] = token.split('.');
      const forged = `${h}.${p}.${Buffer.from('not the signature').toString('base64url')}`;
      const forms: (Record<string, string> | string)[] = [{ token: 'garbage' }, {}, { token: '' }, 'token=a&token=b', { token: forged }, { token: 'x'.repeat(5000) }];
      for (const form of forms) {
        const res = await introspect(t, client, form).expect(200);
        expect(res.body, JSON.stringify(form).slice(0, 40)).to.deep.equal({ active: false });
        expect(res.headers['cache-control']).to.equal('no-store');
      }
    });

    it('answers {"active": false} for an expired token', async () => {
      const { token: old } = await userWithToken(t.server);
      clock.advance((t.config.jwt.expiresInSeconds + t.config.jwt.clockToleranceSeconds + 1) * 1000);
      try {
        expect((await introspect(t, client, { token: old }).expect(200)).body).to.deep.equal({ active: false });
      } finally {
        clock.advance(-(t.config.jwt.expiresInSeconds + t.config.jwt.clockToleranceSeconds + 1) * 1000);
      }
      expect((await introspect(t, client, { token: old }).expect(200)).body).to.include({ active: true });
    });

    it('answers {"active": false} once the session the token came from has signed out', async () => {
      const { token: mine, agent: browser } = await userWithToken(t.server);
      expect((await introspect(t, client, { token: mine })).body).to.include({ active: true });
      const _csrf = csrfFrom((await browser.get('/account').expect(200)).text);
      await browser.post('/auth/logout').type('form').send({ _csrf }).expect(302);
      expect((await introspect(t, client, { token: mine }).expect(200)).body).to.deep.equal({ active: false });
    });

    it('answers {"active": false} for a disabled user', async () => {
      expect((await introspect(t, client, { token })).body).to.include({ active: true });
      await t.database.users.update({ disabled: true }, { where: { username } });
      try {
        expect((await introspect(t, client, { token }).expect(200)).body).to.deep.equal({ active: false });
      } finally {
        await t.database.users.update({ disabled: false }, { where: { username } });
      }
    });

    it('refuses missing, malformed and wrong client credentials with 401 and a Basic challenge, telling nothing about the token', async () => {
      const attempts: (string | null)[] = [
        null,
        basic(client.clientId, `${client.clientSecret}x`),
        basic(client.clientId, ''),
        basic('no-such-client', client.clientSecret),
        basic(client.clientSecret, client.clientId),
        `Bearer ${token}`,
        'Basic',
        'Basic !!!',
        `Basic ${Buffer.from(client.clientId).toString('base64')}`,
      ];
      for (const auth of attempts) {
        const res = await introspect(t, auth, { token }).expect(401);
        expect(res.headers['www-authenticate'], String(auth)).to.equal('Basic realm="introspect"');
        expect(res.body).to.deep.include({ error: 'invalid_client' }).and.not.have.property('active');
      }
    });

    it('refuses two Authorization lines even when one is right', async () => {
      const res = await request(t.server)
        .post('/auth/introspect')
        // Two header lines (superagent passes an array on to Node's setHeader).
        .set('Authorization', [basic(client.clientId, client.clientSecret), basic('x', 'y')] as unknown as string)
        .type('form')
        .send({ token })
        .expect(401);
      expect(res.headers['www-authenticate']).to.equal('Basic realm="introspect"');
    });

    it('accepts the form-encoded credentials of RFC 6749 section 2.3.1 and a lower-case scheme', async () => {
      const encoded = Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64');
      expect((await introspect(t, `basic ${encoded}`, { token }).expect(200)).body).to.include({ active: true });
    });

    it('refuses a client once it is deleted', async () => {
      const clients = clientsOf(t);
      const doomed = await clients.create(`doomed-${alg}`, CLI);
      await introspect(t, doomed, { token }).expect(200);
      await clients.delete(doomed.name, CLI);
      await introspect(t, doomed, { token }).expect(401);
    });
  });
}

describe('API clients of the introspection endpoint', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('makes 256-bit secrets and ids from the CSPRNG, and stores neither the secret nor anything it can be read from', async () => {
    const a = await clientsOf(t).create('store-check-a', CLI);
    const b = await clientsOf(t).create('store-check-b', CLI);
    expect(Buffer.from(a.clientSecret, 'base64url')).to.have.length(32);
    expect(a.clientSecret).to.not.equal(b.clientSecret);
    expect(a.clientId).to.not.equal(b.clientId);
    const rows = await t.database.sequelize.query('SELECT * FROM api_clients', { type: 'SELECT' });
    const dump = JSON.stringify(rows);
    expect(dump).to.include(a.clientId);
    expect(dump).to.not.include(a.clientSecret).and.not.include(b.clientSecret);
  });

  it('refuses a taken or malformed name, changing nothing', async () => {
    const clients = clientsOf(t);
    await clients.create('taken', CLI);
    for (const name of ['taken', '', '-dash-first', 'with space', 'x'.repeat(65), 'semi;colon']) {
      try {
        await clients.create(name, CLI);
        expect.fail(`created ${JSON.stringify(name)}`);
      } catch (err) {
        expect((err as Error).name, name).to.equal('ApiClientError');
      }
    }
    expect((await clients.list()).filter((c) => c.name === 'taken')).to.have.length(1);
  });

  it('records every client change in the audit log, without the secret', async () => {
    const clients = clientsOf(t);
    const made = await clients.create('audited', CLI);
    await clients.delete('audited', CLI);
    const rows = await t.database.auditEvents.findAll({ where: { event: ['client_created', 'client_deleted'] }, order: [['id', 'ASC']] });
    const mine = rows.filter((r) => r.detail?.startsWith('audited '));
    expect(mine.map((r) => [r.event, r.detail])).to.deep.equal([
      ['client_created', `audited (${made.clientId})`],
      ['client_deleted', `audited (${made.clientId})`],
    ]);
    expect(JSON.stringify(rows)).to.not.include(made.clientSecret);
  });
});

describe('throttling failed client authentication per address', () => {
  let t: TestApp;
  let client: NewApiClient;
  let token: string;
  before(async () => {
    t = await startTestApp({ env: { INTROSPECT_IP_MAX_FAILURES: '3', INTROSPECT_IP_WINDOW: '15m', TRUST_PROXY: 'loopback' } });
    client = await clientsOf(t).create('throttled', CLI);
    ({ token } = await userWithToken(t.server));
  });
  after(() => t.close());

  const from = (ip: string, auth: string | null) => {
    const req = request(t.server).post('/auth/introspect').type('form').set('X-Forwarded-For', ip);
    if (auth) req.set('Authorization', auth);
    return req.send({ token });
  };
  const good = () => basic(client.clientId, client.clientSecret);

  it('does not count requests without credentials', async () => {
    for (let i = 0; i < 5; i += 1) await from('203.0.113.9', null).expect(401);
    await from('203.0.113.9', good()).expect(200);
  });

  it('blocks the address after the limit, the right secret included, with 429 and Retry-After; other addresses go on', async () => {
    for (let i = 0; i < 3; i += 1) await from('203.0.113.7', basic(client.clientId, 'wrong')).expect(401);
    const blocked = await from('203.0.113.7', good()).expect(429);
    expect(Number(blocked.headers['retry-after'])).to.be.within(1, 15 * 60);
    expect(blocked.body).to.deep.include({ error: 'too_many_requests' }).and.not.have.property('active');
    await from('203.0.113.7', basic(client.clientId, 'wrong')).expect(429);
    expect((await from('203.0.113.8', good()).expect(200)).body).to.include({ active: true });
  });
});
