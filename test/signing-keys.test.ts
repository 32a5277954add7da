import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { ConfigError, loadConfig } from '../config.js';
import { TokenService } from '../services/tokens.js';
import { startTestApp, testConfig, type TestApp } from './helpers/app.js';
import { userWithToken } from './helpers/browser.js';

const OLD = 'old-hmac-key-0123456789abcdefghijklmnopqrstuv';
const NEW = 'new-hmac-key-9876543210zyxwvutsrqponmlkjihgfe';
const OTHER = 'unrelated-key-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456';
const user = { id: 7, username: 'rotor', roles: [], disabled: false, createdAt: new Date(0), tokensValidAfter: null };

describe('JWT_SECRET_KEY as a list (HS256 key rotation)', () => {
  const at = Date.UTC(2030, 0, 1);
  const service = (keys: string) => new TokenService(testConfig({ JWT_SECRET_KEY: keys }).jwt, () => at);
  const outcome = (verifier: TokenService, token: string) => {
    try {
      verifier.verify(token);
      return 'accepted';
    } catch (err) {
      return (err as Error).message;
    }
  };

  it('signs with the first key only', () => {
    const { token } = service(`${NEW},${OLD}`).mint(user, 'sid-1');
    expect(() => jwt.verify(token, NEW, { algorithms: ['HS256'], clockTimestamp: at / 1000 })).to.not.throw();
    expect(() => jwt.verify(token, OLD, { algorithms: ['HS256'], clockTimestamp: at / 1000 })).to.throw(/invalid signature/);
  });

  it('still accepts a token signed with an older key in the list, so a rotation signs nobody out', () => {
    const before = service(OLD).mint(user, 'sid-1').token;
    expect(outcome(service(`${NEW},${OLD}`), before)).to.equal('accepted');
  });

  it('refuses a token signed with a key that left the list, or was never in it', () => {
    const before = service(OLD).mint(user, 'sid-1').token;
    expect(outcome(service(NEW), before)).to.equal('The token signature or claims are invalid');
    expect(outcome(service(`${NEW},${OLD}`), service(OTHER).mint(user, 'sid-1').token)).to.equal('The token signature or claims are invalid');
  });

  it('answers an expired token signed with an older key as expired (the key matched)', () => {
    const old = new TokenService(testConfig({ JWT_SECRET_KEY: OLD }).jwt, () => at - 7 * 3600_000).mint(user, 'sid-1').token;
    expect(outcome(service(`${NEW},${OLD}`), old)).to.equal('The token has expired');
  });

  it('checks every key of the list like a single one, naming JWT_SECRET_KEY', () => {
    const refused = (value: string, env: Record<string, string> = {}) => {
      try {
        loadConfig({ SESSION_SECRET: NEW, JWT_SECRET_KEY: value, ...env });
        return 'accepted';
      } catch (err) {
        expect(err).to.be.instanceOf(ConfigError);
        return (err as ConfigError).variable;
      }
    };
    expect(refused(`${NEW}, ${OLD}`)).to.equal('accepted');
    expect(refused(`${NEW},short`)).to.equal('JWT_SECRET_KEY');
    expect(refused(' , ')).to.equal('JWT_SECRET_KEY');
    expect(loadConfig({ SESSION_SECRET: NEW, JWT_SECRET_KEY: ` ${NEW} , ${OLD} ` }).jwt.verifyKeys.map((k) => k.export().toString())).to.deep.equal([NEW, OLD]);
  });
});

describe('GET /.well-known/jwks.json with HS256', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { JWT_SECRET_KEY: `${NEW},${OLD}` } });
  });
  after(() => t.close());

  it('publishes no key: {"keys": []}, cacheable for at most 600 s, without a token', async () => {
    const res = await request(t.server).get('/.well-known/jwks.json').expect(200);
    expect(res.headers['content-type']).to.match(/^application\/json/);
    expect(res.headers['cache-control']).to.equal('public, max-age=600');
    expect(res.body).to.deep.equal({ keys: [] });
    expect(res.text).to.not.contain(NEW.slice(0, 12));
  });

  it('serves tokens minted by the app that verify with the first key of the list', async () => {
    const { token } = await userWithToken(t.server);
    expect(() => jwt.verify(token, NEW, { algorithms: ['HS256'] })).to.not.throw();
    await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
  });
});
