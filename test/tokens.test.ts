import { createHmac } from 'node:crypto';
import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import type { Config } from '../config.js';
import { BearerError } from '../errors.js';
import { TokenService } from '../services/tokens.js';
import type { PublicUser } from '../services/users.js';
import { startTestApp, testConfig, type TestApp } from './helpers/app.js';
import { browser, formToken, sessionCookie, STRONG_PASSWORD, uniqueName, userWithToken } from './helpers/browser.js';

const SIX_HOURS = 21600;
const b64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');
const decodeJson = (part: string) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;

/** The BearerError description `fn` throws, or null when it does not throw. */
function rejection(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    expect(err).to.be.instanceOf(BearerError);
    const e = err as BearerError;
    expect(e.status).to.equal(401);
    expect(e.code).to.equal('INVALID_TOKEN');
    expect(e.publicCode).to.equal('invalid_token');
    return e.message;
  }
}

describe('TokenService with an injected clock', () => {
  const settings: Config['jwt'] = testConfig().jwt;
  const user: PublicUser = {
    id: 42,
    username: 'clock_user',
    roles: ['reader'],
    disabled: false,
    createdAt: new Date(0),
    tokensValidAfter: null,
  };
  /** 2023-11-14T22:13:20Z, plus a sub-second part so flooring matters. */
  const T0 = 1_700_000_000_000 + 250;
  const mintedAt = (ms = T0) => new TokenService(settings, () => ms).mint(user, 'session-public-id');
  const verifyAt = (token: string, ms: number) => () => new TokenService(settings, () => ms).verify(token);
  /** A token over any claims, signed with the real key (for boundaries the minter never produces). */
  const signed = (claims: Record<string, unknown>) => {
    const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${createHmac('sha256', settings.key).update(input).digest('base64url')}`;
  };

  it('dates the token by the injected clock and makes it last exactly the configured lifetime', () => {
    const { claims, expiresIn } = mintedAt();
    expect(claims.iat).to.equal(Math.floor(T0 / 1000));
    expect(claims.exp).to.equal(claims.iat + SIX_HOURS);
    expect(expiresIn).to.equal(SIX_HOURS);
  });

  it('verifies its own token and returns the claims it minted', () => {
    const minted = mintedAt();
    const claims = new TokenService(settings, () => T0 + 60_000).verify(minted.token);
    expect(claims).to.deep.equal(minted.claims);
  });

  it('accepts a token in the last second before exp', () => {
    const { token, claims } = mintedAt();
    expect(rejection(verifyAt(token, claims.exp * 1000 - 1))).to.equal(null);
  });

  it('accepts a token at exp and up to 4 s after it (within the 5 s tolerance)', () => {
    const { token, claims } = mintedAt();
    expect(rejection(verifyAt(token, claims.exp * 1000))).to.equal(null);
    expect(rejection(verifyAt(token, (claims.exp + 4) * 1000 + 999))).to.equal(null);
  });

  it('rejects a token 5 s after exp (beyond the tolerance) as expired', () => {
    const { token, claims } = mintedAt();
    expect(rejection(verifyAt(token, (claims.exp + 5) * 1000))).to.equal('The token has expired');
  });

  it('rejects a token long after exp as expired', () => {
    const { token, claims } = mintedAt();
    expect(rejection(verifyAt(token, (claims.exp + 86_400) * 1000))).to.equal('The token has expired');
  });

  it('accepts a token whose iat is up to 5 s ahead of the verifier clock (clock skew)', () => {
    const { token, claims } = mintedAt();
    expect(rejection(verifyAt(token, (claims.iat - 5) * 1000))).to.equal(null);
  });

  it('rejects a token whose iat is more than 5 s ahead of the verifier clock', () => {
    const { token, claims } = mintedAt();
    expect(rejection(verifyAt(token, (claims.iat - 6) * 1000))).to.equal('The token is not valid yet');
    expect(rejection(verifyAt(token, (claims.iat - 3600) * 1000))).to.equal('The token is not valid yet');
  });

  it('accepts nbf up to 5 s ahead and rejects it beyond', () => {
    const { claims } = mintedAt();
    const now = claims.iat * 1000;
    expect(rejection(verifyAt(signed({ ...claims, nbf: claims.iat + 5 }), now))).to.equal(null);
    expect(rejection(verifyAt(signed({ ...claims, nbf: claims.iat + 6 }), now))).to.equal('The token is not valid yet');
  });

  it('rejects a token signed with another key, issuer or audience', () => {
    const other = (changes: Partial<Config['jwt']>) =>
      new TokenService({ ...settings, ...changes }, () => T0).mint(user, 'sid').token;
    const verify = (token: string) => () => new TokenService(settings, () => T0).verify(token);
    const otherKey = testConfig({ JWT_SECRET_KEY: 'another-test-key-cccccccccccccccccccccccccccccccc' }).jwt.key;
    expect(rejection(verify(other({ key: otherKey })))).to.equal('The token signature or claims are invalid');
    expect(rejection(verify(other({ issuer: 'someone-else' })))).to.equal('The token signature or claims are invalid');
    expect(rejection(verify(other({ audience: 'other-api' })))).to.equal('The token signature or claims are invalid');
  });

  it('rejects a token longer than MAX_TOKEN_LENGTH before parsing it', () => {
    const { claims } = mintedAt();
    const token = signed({ ...claims, pad: 'x'.repeat(5000) });
    expect(rejection(verifyAt(token, T0))).to.equal('The token is too long');
  });

  describe('remembered verifications (one service, a moving clock)', () => {
    it('refuses a remembered token once it has expired', () => {
      const clock = { now: T0 };
      const service = new TokenService(settings, () => clock.now);
      const { token, claims } = mintedAt();
      expect(rejection(() => service.verify(token))).to.equal(null);
      clock.now = (claims.exp + 4) * 1000;
      expect(rejection(() => service.verify(token)), 'within the tolerance').to.equal(null);
      clock.now = (claims.exp + 5) * 1000;
      expect(rejection(() => service.verify(token))).to.equal('The token has expired');
    });

    it('refuses a remembered token while its iat is ahead of a clock that went back', () => {
      const clock = { now: T0 };
      const service = new TokenService(settings, () => clock.now);
      const { token, claims } = mintedAt();
      expect(rejection(() => service.verify(token))).to.equal(null);
      clock.now = (claims.iat - 6) * 1000;
      expect(rejection(() => service.verify(token))).to.equal('The token is not valid yet');
    });

    it('gives any other string the full check: every one-character change of a remembered token is refused', () => {
      const service = new TokenService(settings, () => T0);
      const { token } = mintedAt();
      service.verify(token);
      const swap = (c: string) => (c === 'A' ? 'B' : 'A');
      for (let i = 0; i < token.length; i += 7) {
        if (token[i] === '.') continue;
        const changed = token.slice(0, i) + swap(token[i]!) + token.slice(i + 1);
        expect(rejection(() => service.verify(changed)), `position ${i}`).to.not.equal(null);
      }
      expect(rejection(() => service.verify(token)), 'the original still verifies').to.equal(null);
    });

    it('hands out frozen claims, so no caller can change what the next request sees', () => {
      const service = new TokenService(settings, () => T0);
      const { token } = mintedAt();
      const claims = service.verify(token);
      expect(Object.isFrozen(claims) && Object.isFrozen(claims.roles)).to.equal(true);
      expect(() => (claims.roles as string[]).push('admin')).to.throw(TypeError);
      expect(service.verify(token).roles).to.deep.equal(['reader']);
    });
  });

  it('returns only the known claims, never extra ones from the token', () => {
    const { claims } = mintedAt();
    const verified = new TokenService(settings, () => T0).verify(signed({ ...claims, admin: true, passwordHash: 'x' }));
    expect(verified).to.have.all.keys('sub', 'username', 'roles', 'amr', 'sid', 'jti', 'iat', 'exp', 'iss', 'aud');
  });
});

describe('the minted token', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  /** Registers through the real form, keeping the session cookie, then mints two tokens. */
  async function registeredWithCookie(username = uniqueName()) {
    const agent = browser(t.server);
    const _csrf = await formToken(agent, '/auth/register');
    const reg = await agent
      .post('/auth/register')
      .type('form')
      .send({ _csrf, username, password: STRONG_PASSWORD, confirmPassword: STRONG_PASSWORD });
    expect(reg.status, reg.text).to.equal(302);
    const cookie = sessionCookie(reg, t.config.session.cookieName);
    expect(cookie, 'session cookie').to.be.a('string');
    const first = await agent.get('/auth/token').expect(200);
    const second = await agent.get('/auth/token').expect(200);
    return { agent, username, cookie: cookie!, token: first.body.token as string, second: second.body.token as string };
  }

  it('answers GET /auth/token with the token, its type and its lifetime', async () => {
    const { agent } = await registeredWithCookie();
    const res = await agent.get('/auth/token').expect(200);
    expect(res.headers['content-type']).to.match(/^application\/json/);
    expect(res.body).to.have.all.keys('token', 'token_type', 'expires_in');
    expect(res.body).to.include({ token_type: 'Bearer', expires_in: SIX_HOURS });
  });

  it('has the header exactly {"alg":"HS256","typ":"JWT"}', async () => {
    const { token } = await registeredWithCookie();
    const [header] = token.split('.');
    expect(Buffer.from(header!, 'base64url').toString('utf8')).to.equal('{"alg":"HS256","typ":"JWT"}');
  });

  it('is three base64url segments without padding', async () => {
    const { token } = await registeredWithCookie();
    expect(token).to.match(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  });

  it('carries exactly sub, username, roles, amr, iat, exp, iss, aud, jti and sid, with the right types', async () => {
    const { token, username } = await registeredWithCookie();
    const nowSec = Math.floor(Date.now() / 1000);
    const payload = decodeJson(token.split('.')[1]!);
    expect(payload).to.have.all.keys('sub', 'username', 'roles', 'amr', 'iat', 'exp', 'iss', 'aud', 'jti', 'sid');
    // RFC 8176: a registration signs in with the password alone.
    expect(payload.amr).to.deep.equal(['pwd']);
    expect(payload.sub).to.be.a('string').and.match(/^[1-9]\d*$/);
    expect(payload.username).to.equal(username);
    expect(payload.roles).to.deep.equal([]);
    expect(payload.iat).to.be.a('number').and.within(nowSec - 60, nowSec + 5);
    expect(payload.exp).to.equal((payload.iat as number) + SIX_HOURS);
    expect(payload.iss).to.equal(t.config.jwt.issuer);
    expect(payload.aud).to.equal(t.config.jwt.audience);
    expect(payload.jti).to.be.a('string').that.has.length.above(0);
    expect(payload.sid).to.be.a('string').that.has.length.above(0);
  });

  it('carries the user id from the database as sub and the database roles', async () => {
    const { token, username, agent } = await registeredWithCookie();
    const row = await t.database.users.findOne({ where: { username } });
    expect(decodeJson(token.split('.')[1]!).sub).to.equal(String(row!.id));
    await row!.update({ roles: ['admin', 'reader'] });
    const fresh = (await agent.get('/auth/token').expect(200)).body.token as string;
    expect(decodeJson(fresh.split('.')[1]!).roles).to.deep.equal(['admin', 'reader']);
  });

  it('gives every mint its own jti', async () => {
    const { token, second } = await registeredWithCookie();
    const a = decodeJson(token.split('.')[1]!);
    const b = decodeJson(second.split('.')[1]!);
    expect(a.jti).to.not.equal(b.jti);
    expect(a.sid).to.equal(b.sid);
  });

  it('names the session by an opaque sid, never the session cookie value or id', async () => {
    const { token, cookie } = await registeredWithCookie();
    const sid = decodeJson(token.split('.')[1]!).sid as string;
    const cookieValue = cookie.slice(cookie.indexOf('=') + 1);
    const signedId = decodeURIComponent(cookieValue); // "s:<session id>.<signature>"
    const sessionId = signedId.slice(2, signedId.lastIndexOf('.'));
    expect(sessionId.length).to.be.greaterThan(10);
    for (const secret of [cookieValue, signedId, sessionId, signedId.slice(signedId.lastIndexOf('.') + 1)]) {
      expect(sid).to.not.equal(secret);
      expect(sid).to.not.contain(secret);
      expect(secret).to.not.contain(sid);
    }
    // It is the public id of the very session that minted it.
    const [rows] = await t.database.sequelize.query('SELECT sid, public_id FROM sessions WHERE public_id = ?', { replacements: [sid] });
    expect(rows).to.have.length(1);
    expect((rows[0] as { sid: string }).sid).to.equal(sessionId);
  });

  it('contains no password hash or anything secret', async () => {
    const { token, username } = await registeredWithCookie();
    const row = await t.database.users.findOne({ where: { username } });
    const text = Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8');
    expect(text).to.not.contain(row!.passwordHash);
    expect(text).to.not.match(/argon2|password|hash|secret/i);
    expect(text).to.not.contain(STRONG_PASSWORD);
    expect(text).to.not.contain(t.config.jwt.key.export().toString('utf8'));
  });

  it('verifies with jsonwebtoken given the key as a plain string (standard debugger compatibility)', async () => {
    const { token, username } = await registeredWithCookie();
    const keyText = t.config.jwt.key.export().toString('utf8');
    const payload = jwt.verify(token, keyText, {
      algorithms: ['HS256'],
      issuer: t.config.jwt.issuer,
      audience: t.config.jwt.audience,
    }) as jwt.JwtPayload;
    expect(payload.username).to.equal(username);
    // And by hand: HMAC-SHA256 over "header.payload" with the UTF-8 bytes of the key.
    const [h, p, s] = token.split('.');
    expect(createHmac('sha256', Buffer.from(keyText, 'utf8')).update(`${h}.${p}`).digest('base64url')).to.equal(s);
  });

  it('encodes a non-ASCII username as UTF-8 JSON that verifies and round-trips through the API', async () => {
    const username = `Zoë_名前${process.pid % 1000}`;
    const { token } = await registeredWithCookie(username);
    const payload = jwt.verify(token, t.config.jwt.key.export().toString('utf8'), { algorithms: ['HS256'] }) as jwt.JwtPayload;
    expect(payload.username).to.equal(username);
    const me = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
    expect(me.body.username).to.equal(username);
  });

  it('is accepted by the API it was minted for', async () => {
    const { token } = await registeredWithCookie();
    await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
  });
});

describe('GET /auth/token', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('answers 401 JSON with a WWW-Authenticate challenge when not signed in', async () => {
    const res = await request(t.server).get('/auth/token').set('Accept', 'text/html');
    expect(res.status).to.equal(401);
    expect(res.headers['content-type']).to.match(/^application\/json/);
    expect(res.headers['www-authenticate']).to.be.a('string').that.has.length.above(0);
    expect(res.body).to.have.all.keys('error', 'message');
    expect(res.text).to.not.match(/stack|\bat .+:\d+:\d+|<html/i);
  });

  it('does not mint for a browser whose session was never signed in', async () => {
    const agent = browser(t.server);
    await agent.get('/auth/login').expect(200);
    const res = await agent.get('/auth/token');
    expect(res.status).to.equal(401);
    expect(res.body).to.not.have.property('token');
  });

  it('refuses a session whose user was disabled since sign-in, and drops the user from that session', async () => {
    const { agent, username } = await userWithToken(t.server);
    const user = await t.database.users.findOne({ where: { username } });
    const before = await t.database.sessions.findAll({ where: { userId: user!.id } });
    expect(before).to.have.length(1);
    await t.database.users.update({ disabled: true }, { where: { id: user!.id } });

    const res = await agent.get('/auth/token');
    expect(res.status).to.equal(401);
    expect(res.body).to.not.have.property('token');
    const row = await t.database.sessions.findByPk(before[0]!.sid);
    expect(row!.userId, 'the user id is gone from the stored session').to.equal(null);
    expect((JSON.parse(row!.data) as { passport?: { user?: number } }).passport?.user).to.equal(undefined);

    await t.database.users.update({ disabled: false }, { where: { id: user!.id } });
    expect((await agent.get('/auth/token')).status, 'enabling the user does not revive the old session').to.equal(401);
  });

  it('is answered with Cache-Control: no-store', async () => {
    const { agent } = await userWithToken(t.server);
    const res = await agent.get('/auth/token').expect(200);
    expect(res.headers['cache-control']).to.contain('no-store');
    const anonymous = await request(t.server).get('/auth/token');
    expect(anonymous.headers['cache-control']).to.contain('no-store');
  });

  it('sends no Access-Control-Allow-Origin, even to a request with Origin: https://evil.example', async () => {
    const { agent } = await userWithToken(t.server);
    const res = await agent.get('/auth/token').set('Origin', 'https://evil.example');
    expect(res.headers).to.not.have.property('access-control-allow-origin');
    expect(res.headers).to.not.have.property('access-control-allow-credentials');
    const preflight = await agent
      .options('/auth/token')
      .set('Origin', 'https://evil.example')
      .set('Access-Control-Request-Method', 'GET')
      .set('Access-Control-Request-Headers', 'authorization');
    expect(preflight.headers).to.not.have.property('access-control-allow-origin');
    expect(preflight.headers).to.not.have.property('access-control-allow-credentials');
  });

  it('sends Cross-Origin-Resource-Policy: same-origin', async () => {
    const { agent } = await userWithToken(t.server);
    const res = await agent.get('/auth/token').expect(200);
    expect(res.headers['cross-origin-resource-policy']).to.equal('same-origin');
  });

  it('refuses a signed-in request with Sec-Fetch-Site: cross-site with 403 and no token', async () => {
    const { agent } = await userWithToken(t.server);
    const res = await agent.get('/auth/token').set('Sec-Fetch-Site', 'cross-site');
    expect(res.status).to.equal(403);
    expect(res.headers['content-type']).to.match(/^application\/json/);
    expect(res.body).to.have.all.keys('error', 'message');
    expect(res.text).to.not.match(/eyJ/);
  });

  it('mints for a signed-in request with Sec-Fetch-Site: same-origin or none (control)', async () => {
    const { agent } = await userWithToken(t.server);
    await agent.get('/auth/token').set('Sec-Fetch-Site', 'same-origin').expect(200);
    await agent.get('/auth/token').set('Sec-Fetch-Site', 'none').expect(200);
  });
});
