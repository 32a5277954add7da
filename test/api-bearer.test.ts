import { createHmac, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { userWithToken } from './helpers/browser.js';

/*
 * Attacks on the bearer API. Every forged token starts from the claims of a
 * real token of a real user (registered through the form) and changes one
 * property, so that property alone is what makes it invalid. The control test
 * "accepts a token forged with the right key and the same claims" proves the
 * forging helper itself produces tokens the API accepts.
 */

type Claims = Record<string, unknown>;
type Res = request.Response;

const MISSING_CHALLENGE = 'Bearer realm="api"';
const invalidChallenge = (description: string) =>
  `Bearer realm="api", error="invalid_token", error_description="${description}"`;

const D = {
  tooLong: 'The token is too long',
  notJwt: 'The token is not a JWT',
  expired: 'The token has expired',
  notYet: 'The token is not valid yet',
  bad: 'The token signature or claims are invalid',
  header: 'The token header is not accepted',
  malformed: 'The token claims are malformed',
  user: 'The token user is unknown or disabled',
} as const;

const b64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

/** A JWS compact token with any header and payload, HMAC-signed with `key` (or unsigned when key is null). */
function forge(header: unknown, payload: unknown, key: KeyObject | Buffer | string | null, hash = 'sha256'): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const signature = key === null ? '' : createHmac(hash, key).update(input).digest('base64url');
  return `${input}.${signature}`;
}

function decodePart(token: string, index: 0 | 1): Claims {
  return JSON.parse(Buffer.from(token.split('.')[index]!, 'base64url').toString('utf8')) as Claims;
}

function expectJsonError(res: Res, status: number, code: string) {
  expect(res.status, res.text).to.equal(status);
  expect(res.headers['content-type']).to.match(/^application\/json/);
  expect(res.body).to.have.all.keys('error', 'message');
  expect(res.body.error).to.equal(code);
  expect(res.body.message).to.be.a('string').that.has.length.above(0);
  expect(res.text).not.to.match(/stack|\bat .+:\d+:\d+|node_modules|\.ts\b|<html/i);
}

/** No, or a malformed, Authorization header: 401 with the bare challenge. */
function expectMissing(res: Res) {
  expectJsonError(res, 401, 'unauthorized');
  expect(res.headers['www-authenticate']).to.equal(MISSING_CHALLENGE);
}

/** A well-formed header carrying a bad token: 401 invalid_token with a description. */
function expectInvalid(res: Res, description: string) {
  expectJsonError(res, 401, 'invalid_token');
  expect(res.headers['www-authenticate']).to.equal(invalidChallenge(description));
}

describe('bearer API: attacks on the token and the Authorization header', () => {
  let t: TestApp;
  let key: KeyObject;
  let token: string;
  let username: string;
  /** The claims of a real token minted for a real, active user. */
  let base: Claims;
  const HS256 = { alg: 'HS256', typ: 'JWT' };
  const now = () => Math.floor(Date.now() / 1000);
  /** The real user's claims, freshly dated, with `changes` applied (`undefined` deletes a claim). */
  const claims = (changes: Claims = {}): Claims => {
    const iat = now();
    const merged: Claims = { ...base, jti: randomUUID(), iat, exp: iat + 21600, ...changes };
    for (const [k, v] of Object.entries(changes)) if (v === undefined) delete merged[k];
    return merged;
  };
  const api = (path = '/api/me') => request(t.server).get(path);
  const withToken = (value: string, path = '/api/me') => api(path).set('Authorization', `Bearer ${value}`);

  before(async () => {
    t = await startTestApp();
    key = t.config.jwt.key;
    ({ token, username } = await userWithToken(t.server));
    base = decodePart(token, 1);
  });
  after(() => t.close());

  describe('where the token may come from', () => {
    it('accepts the minted token and answers /api/me with the user', async () => {
      const res = await withToken(token).expect(200);
      expect(res.headers['content-type']).to.match(/^application\/json/);
      expect(res.body).to.deep.equal({ id: base.sub, username, roles: [] });
    });

    it('accepts a token forged with the right key and the same claims (control for every forgery below)', async () => {
      await withToken(forge(HS256, claims(), key)).expect(200);
    });

    it('treats the scheme name case-insensitively (bearer, BEARER, bEaReR)', async () => {
      for (const scheme of ['bearer', 'BEARER', 'bEaReR']) {
        await api().set('Authorization', `${scheme} ${token}`).expect(200);
      }
    });

    it('answers a request without an Authorization header with 401 and the bare Bearer challenge', async () => {
      expectMissing(await api());
    });

    it('ignores a valid token in the ?access_token= query parameter', async () => {
      expectMissing(await api(`/api/me?access_token=${token}`));
    });

    it('ignores a valid token in a cookie', async () => {
      expectMissing(await api().set('Cookie', `access_token=${token}; token=${token}; jwt=${token}; Authorization=Bearer%20${token}`));
    });

    it('ignores a valid token in a form or JSON body', async () => {
      expectMissing(await request(t.server).post('/api/me').type('form').send({ access_token: token }));
      expectMissing(await request(t.server).post('/api/me').send({ access_token: token }));
    });

    it('refuses a Basic Authorization header', async () => {
      expectMissing(await api().set('Authorization', `Basic ${Buffer.from(`${username}:x`).toString('base64')}`));
    });

    it('refuses a token sent with another scheme or none at all', async () => {
      expectMissing(await api().set('Authorization', token));
      expectMissing(await api().set('Authorization', `Token ${token}`));
      expectMissing(await api().set('Authorization', `JWT ${token}`));
    });

    it('refuses "Bearer" with nothing after it', async () => {
      expectMissing(await api().set('Authorization', 'Bearer'));
      expectMissing(await api().set('Authorization', 'Bearer '));
      expectMissing(await api().set('Authorization', ''));
    });

    it('refuses two tokens in one Authorization header', async () => {
      expectMissing(await api().set('Authorization', `Bearer ${token} ${token}`));
      expectMissing(await api().set('Authorization', `Bearer ${token}, Bearer ${token}`));
      expectMissing(await api().set('Authorization', `Bearer ${token},${token}`));
    });

    it('refuses two Authorization headers even when the first carries a valid token', async () => {
      // Node keeps only the first of repeated Authorization lines; a proxy may keep the last.
      // superagent sends an array value as repeated lines; its types only admit that for Cookie.
      const twoLines = (first: string, second: string) => [first, second] as unknown as string;
      expectMissing(await api().set('Authorization', twoLines(`Bearer ${token}`, 'Bearer a.b.c')));
      expectMissing(await api().set('Authorization', twoLines('Bearer a.b.c', `Bearer ${token}`)));
      expectMissing(await api().set('Authorization', twoLines(`Bearer ${token}`, `Bearer ${token}`)));
    });
  });

  describe('tampering', () => {
    it('rejects a token whose username was changed and signature kept', async () => {
      const [h, , s] = token.split('.');
      const forged = `${h}.${b64url(JSON.stringify({ ...base, username: 'admin' }))}.${s}`;
      expectInvalid(await withToken(forged), D.bad);
    });

    it('rejects a token whose roles were changed and signature kept', async () => {
      const [h, , s] = token.split('.');
      const forged = `${h}.${b64url(JSON.stringify({ ...base, roles: ['admin'] }))}.${s}`;
      expectInvalid(await withToken(forged), D.bad);
    });

    it('rejects a token whose sub was changed to another user and signature kept', async () => {
      const [h, , s] = token.split('.');
      const forged = `${h}.${b64url(JSON.stringify({ ...base, sub: String(Number(base.sub) + 1) }))}.${s}`;
      expectInvalid(await withToken(forged), D.bad);
    });

    it('rejects a token with a changed signature', async () => {
      const [h, p, s] = token.split('.') as [string, string, string];
      const flipped = (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
      expectInvalid(await withToken(`${h}.${p}.${flipped}`), D.bad);
    });

    it('rejects a token with a truncated signature', async () => {
      const [h, p, s] = token.split('.') as [string, string, string];
      expectInvalid(await withToken(`${h}.${p}.${s.slice(0, 20)}`), D.bad);
    });

    it('rejects a token carrying the signature of another valid token', async () => {
      const other = forge(HS256, claims(), key);
      const [h, p] = token.split('.');
      expectInvalid(await withToken(`${h}.${p}.${other.split('.')[2]}`), D.bad);
    });
  });

  describe('alg: none', () => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      it(`rejects alg "${alg}" with an empty signature`, async () => {
        expectInvalid(await withToken(forge({ alg, typ: 'JWT' }, claims(), null)), D.notJwt);
      });

      it(`rejects alg "${alg}" with a non-empty signature`, async () => {
        // Signed with the right key: only the algorithm name is wrong.
        expectInvalid(await withToken(forge({ alg, typ: 'JWT' }, claims(), key)), D.bad);
        const input = forge({ alg, typ: 'JWT' }, claims(), null);
        expectInvalid(await withToken(`${input}AAAA`), D.bad);
      });
    }

    it('rejects a header without alg', async () => {
      expectInvalid(await withToken(forge({ typ: 'JWT' }, claims(), key)), D.bad);
    });
  });

  describe('algorithm and key', () => {
    it('rejects a token signed with HS512 using the right key', async () => {
      expectInvalid(await withToken(forge({ alg: 'HS512', typ: 'JWT' }, claims(), key, 'sha512')), D.bad);
    });

    it('rejects a token signed with HS384 using the right key', async () => {
      expectInvalid(await withToken(forge({ alg: 'HS384', typ: 'JWT' }, claims(), key, 'sha384')), D.bad);
    });

    it('rejects an RS256 header over an HMAC signature made with the key (key confusion)', async () => {
      expectInvalid(await withToken(forge({ alg: 'RS256', typ: 'JWT' }, claims(), key)), D.bad);
      expectInvalid(await withToken(forge({ alg: 'ES256', typ: 'JWT' }, claims(), key)), D.bad);
      expectInvalid(await withToken(forge({ alg: 'PS256', typ: 'JWT' }, claims(), key)), D.bad);
    });

    it('rejects an HS256 token signed with another 32-byte key', async () => {
      expectInvalid(await withToken(forge(HS256, claims(), randomBytes(32))), D.bad);
    });

    it('rejects an HS256 token signed with an empty key', async () => {
      expectInvalid(await withToken(forge(HS256, claims(), Buffer.alloc(0))), D.bad);
    });

    it('rejects an HS256 token signed with a key that differs from the real one only in its last byte', async () => {
      const raw = key.export();
      raw.writeUInt8(raw.readUInt8(raw.length - 1) ^ 1, raw.length - 1);
      expectInvalid(await withToken(forge(HS256, claims(), raw)), D.bad);
    });
  });

  describe('lifetime', () => {
    it('rejects a token that expired beyond the 5 s clock tolerance', async () => {
      const exp = now() - 10;
      expectInvalid(await withToken(forge(HS256, claims({ iat: exp - 21600, exp }), key)), D.expired);
    });

    it('rejects a token whose nbf is in the future', async () => {
      expectInvalid(await withToken(forge(HS256, claims({ nbf: now() + 60 }), key)), D.notYet);
    });

    it('rejects a token whose iat is in the future', async () => {
      const iat = now() + 60;
      expectInvalid(await withToken(forge(HS256, claims({ iat, exp: iat + 21600 }), key)), D.notYet);
    });

    it('rejects a token without exp', async () => {
      expectInvalid(await withToken(forge(HS256, claims({ exp: undefined }), key)), D.malformed);
    });

    it('rejects a token without iat', async () => {
      expectInvalid(await withToken(forge(HS256, claims({ iat: undefined }), key)), D.malformed);
    });
  });

  describe('issuer and audience', () => {
    it('rejects a token with the wrong iss', async () => {
      expectInvalid(await withToken(forge(HS256, claims({ iss: 'someone-else' }), key)), D.bad);
    });

    it('rejects a token with the wrong aud', async () => {
      expectInvalid(await withToken(forge(HS256, claims({ aud: 'other-api' }), key)), D.bad);
    });

    it('rejects a token without iss', async () => {
      expectInvalid(await withToken(forge(HS256, claims({ iss: undefined }), key)), D.bad);
    });

    it('rejects a token without aud', async () => {
      expectInvalid(await withToken(forge(HS256, claims({ aud: undefined }), key)), D.bad);
    });

    it('rejects iss and aud that differ only in case', async () => {
      const { issuer, audience } = t.config.jwt;
      expectInvalid(await withToken(forge(HS256, claims({ iss: issuer.toUpperCase() }), key)), D.bad);
      expectInvalid(await withToken(forge(HS256, claims({ aud: audience.toUpperCase() }), key)), D.bad);
    });
  });

  describe('claims of the wrong type or shape', () => {
    const cases: Array<[string, Claims, string]> = [
      ['sub as a number', { sub: 'NUMBER' }, D.malformed],
      ['sub null', { sub: null }, D.malformed],
      ['sub missing', { sub: undefined }, D.malformed],
      ['sub "0"', { sub: '0' }, D.malformed],
      ['sub with a leading zero', { sub: 'LEADING_ZERO' }, D.malformed],
      ['roles null', { roles: null }, D.malformed],
      ['roles true', { roles: true }, D.malformed],
      ['roles 0', { roles: 0 }, D.malformed],
      ['roles as the string "admin"', { roles: 'admin' }, D.malformed],
      ['roles holding a non-string', { roles: [{ name: 'admin' }] }, D.malformed],
      ['username null', { username: null }, D.malformed],
      ['username missing', { username: undefined }, D.malformed],
      ['exp as a string', { exp: 'EXP_STRING' }, D.bad],
      ['exp as a fraction', { exp: 'EXP_FRACTION' }, D.malformed],
      ['sid missing', { sid: undefined }, D.malformed],
      ['sid null', { sid: null }, D.malformed],
      ['jti missing', { jti: undefined }, D.malformed],
    ];
    for (const [name, changes, description] of cases) {
      it(`rejects a token with ${name}`, async () => {
        const fixed: Claims = { ...changes };
        const iat = now();
        if (fixed.sub === 'NUMBER') fixed.sub = Number(base.sub);
        if (fixed.sub === 'LEADING_ZERO') fixed.sub = `0${String(base.sub)}`;
        if (fixed.exp === 'EXP_STRING') fixed.exp = String(iat + 21600);
        if (fixed.exp === 'EXP_FRACTION') fixed.exp = iat + 21600.5;
        expectInvalid(await withToken(forge(HS256, claims(fixed), key)), description);
      });
    }

    it('rejects a payload that is a JSON array, a string or not JSON at all', async () => {
      expectInvalid(await withToken(forge(HS256, [claims()], key)), D.bad);
      expectInvalid(await withToken(forge(HS256, 'hello', key)), D.bad);
      const input = `${b64url(JSON.stringify(HS256))}.${b64url('not json')}`;
      expectInvalid(await withToken(`${input}.${createHmac('sha256', key).update(input).digest('base64url')}`), D.bad);
    });
  });

  describe('the user behind the token', () => {
    it('rejects a token for a user id that does not exist', async () => {
      expectInvalid(await withToken(forge(HS256, claims({ sub: '999999' }), key)), D.user);
      expectInvalid(await withToken(forge(HS256, claims({ sub: '9999999999999999' }), key)), D.user);
    });

    it('rejects the token of a user who has been disabled', async () => {
      // No API call before the change: an access cache must not be what makes this pass or fail.
      const victim = await userWithToken(t.server);
      const id = Number(decodePart(victim.token, 1).sub);
      await t.database.users.update({ disabled: true }, { where: { id } });
      expectInvalid(await withToken(victim.token), D.user);
    });

    it('rejects the token of a user who has been deleted', async () => {
      const victim = await userWithToken(t.server);
      const id = Number(decodePart(victim.token, 1).sub);
      await t.database.users.destroy({ where: { id } });
      expectInvalid(await withToken(victim.token), D.user);
    });

    it('answers /api/me from the database, not from the roles claimed in the token', async () => {
      const victim = await userWithToken(t.server);
      const id = Number(decodePart(victim.token, 1).sub);
      await t.database.users.update({ roles: ['auditor'] }, { where: { id } });
      const res = await withToken(victim.token).expect(200);
      expect(res.body.roles).to.deep.equal(['auditor']);
    });
  });

  describe('garbage', () => {
    it('rejects "abc"', async () => {
      expectInvalid(await withToken('abc'), D.notJwt);
    });

    it('rejects "a.b.c"', async () => {
      expectInvalid(await withToken('a.b.c'), D.bad);
    });

    it('rejects random base64', async () => {
      expectInvalid(await withToken(randomBytes(48).toString('base64')), D.notJwt);
      expectInvalid(await withToken(randomBytes(48).toString('base64url')), D.notJwt);
    });

    it('rejects a token with two or four segments', async () => {
      const [h, p, s] = token.split('.');
      expectInvalid(await withToken(`${h}.${p}`), D.notJwt);
      expectInvalid(await withToken(`${h}.${p}.${s}.${s}`), D.notJwt);
      expectInvalid(await withToken(`${h}..${s}`), D.notJwt);
    });

    it('rejects a token with base64 padding', async () => {
      expectInvalid(await withToken(`${token}=`), D.notJwt);
    });

    it('answers a 64 KiB token with a clean 401, not a 431 or 500', async () => {
      expectInvalid(await withToken('a'.repeat(64 * 1024)), D.tooLong);
      // A properly signed one too: the size limit holds before any parsing.
      const huge = forge(HS256, claims({ pad: 'x'.repeat(48 * 1024) }), key);
      expect(huge.length).to.be.greaterThan(64 * 1024);
      expectInvalid(await withToken(huge), D.tooLong);
    });

    it('rejects a token just over the length limit even when it is correctly signed', async () => {
      const forged = forge(HS256, claims({ pad: 'x'.repeat(3300) }), key);
      expect(forged.length).to.be.within(4097, 5000);
      expectInvalid(await withToken(forged), D.tooLong);
    });

    it('refuses non-ASCII bytes in the header as malformed', async () => {
      // Node sends header strings as Latin-1: these are the raw UTF-8 bytes of "é" and "ü".
      const utf8 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
      expectMissing(await api().set('Authorization', utf8(`Bearer ${token}é`)));
      const [h, p, s] = token.split('.');
      expectMissing(await api().set('Authorization', utf8(`Bearer ${h}.ü${p}.${s}`)));
      expectMissing(await api().set('Authorization', `Bearer ${'\u00ff'.repeat(40)}`));
    });

    it('refuses control characters in the header as malformed', async () => {
      expectMissing(await api().set('Authorization', `Bearer\t${token}`));
    });
  });

  describe('JOSE header parameters', () => {
    let jwksHits = 0;
    let jwksServer: Server;
    let jwksUrl: string;
    before(async () => {
      jwksServer = createServer((_req, res) => {
        jwksHits += 1;
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ keys: [{ kty: 'oct', k: b64url('attacker') }] }));
      });
      await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
      jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
    });
    after(() => new Promise<void>((resolve) => jwksServer.close(() => resolve())));

    it('rejects a kid header even on a correctly signed token', async () => {
      expectInvalid(await withToken(forge({ ...HS256, kid: '1' }, claims(), key)), D.header);
    });

    it('rejects a kid that points at an empty file, signed with an empty key', async () => {
      expectInvalid(await withToken(forge({ ...HS256, kid: '../../../../dev/null' }, claims(), Buffer.alloc(0))), D.bad);
    });

    it('rejects an embedded jwk holding the attacker key, signed with that key', async () => {
      const attacker = randomBytes(32);
      const header = { ...HS256, jwk: { kty: 'oct', k: b64url(attacker) } };
      expectInvalid(await withToken(forge(header, claims(), attacker)), D.bad);
    });

    it('rejects an embedded jwk header even on a correctly signed token', async () => {
      const header = { ...HS256, jwk: { kty: 'oct', k: b64url(key.export()) } };
      expectInvalid(await withToken(forge(header, claims(), key)), D.header);
    });

    it('rejects a jku header and never fetches it', async () => {
      expectInvalid(await withToken(forge({ ...HS256, jku: jwksUrl }, claims(), key)), D.header);
      expect(jwksHits).to.equal(0);
    });

    it('rejects an x5u header and never fetches it', async () => {
      expectInvalid(await withToken(forge({ ...HS256, x5u: jwksUrl }, claims(), key)), D.header);
      expect(jwksHits).to.equal(0);
    });

    it('rejects x5c and x5t headers', async () => {
      expectInvalid(await withToken(forge({ ...HS256, x5c: ['MIIB'] }, claims(), key)), D.header);
      expectInvalid(await withToken(forge({ ...HS256, x5t: 'abc' }, claims(), key)), D.header);
    });

    it('rejects a crit header naming an extension it does not understand', async () => {
      expectInvalid(await withToken(forge({ ...HS256, crit: ['b64'], b64: false }, claims(), key)), D.header);
      expectInvalid(await withToken(forge({ ...HS256, crit: ['exp'] }, claims(), key)), D.header);
    });

    it('rejects a typ other than JWT', async () => {
      for (const typ of ['at+jwt', 'JWE', 'JOSE', '']) {
        expectInvalid(await withToken(forge({ alg: 'HS256', typ }, claims(), key)), D.header);
      }
      expectInvalid(await withToken(forge({ alg: 'HS256', typ: null }, claims(), key)), D.header);
    });

    it('rejects a cty (nested token) header', async () => {
      expectInvalid(await withToken(forge({ ...HS256, cty: 'JWT' }, claims(), key)), D.header);
    });
  });

  describe('routing and error format', () => {
    it('answers an unknown /api path with a valid token with a JSON 404', async () => {
      const res = await withToken(token, '/api/nope').set('Accept', 'text/html');
      expectJsonError(res, 404, 'not_found');
    });

    it('authenticates before routing: an unknown /api path without a token is a 401', async () => {
      expectMissing(await api('/api/nope'));
    });

    it('answers API errors with JSON even when the client prefers HTML', async () => {
      expectMissing(await api().set('Accept', 'text/html,application/xhtml+xml'));
      expectInvalid(await withToken('abc').set('Accept', 'text/html'), D.notJwt);
    });

    it('answers API errors with JSON whatever the case of the /api prefix', async () => {
      // Express matches mount paths case-insensitively, so /API/me reaches the bearer check.
      for (const path of ['/API/me', '/Api/me', '/API/nope']) {
        expectMissing(await api(path).set('Accept', 'text/html'));
      }
      expectJsonError(await withToken(token, '/API/nope').set('Accept', 'text/html'), 404, 'not_found');
    });

    it('never lets a cache keep an authenticated answer or an error', async () => {
      const ok = await withToken(token).expect(200);
      expect(ok.headers['cache-control']).to.contain('no-store');
      const denied = await api();
      expect(denied.headers['cache-control']).to.contain('no-store');
    });
  });
});

describe('bearer API when the database fails', () => {
  it('answers with a JSON 5xx and no stack trace', async () => {
    const t = await startTestApp();
    const { token } = await userWithToken(t.server);
    await t.database.close();
    const res = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).set('Accept', 'text/html');
    expect(res.status).to.be.within(500, 599);
    expect(res.headers['content-type']).to.match(/^application\/json/);
    expect(res.body).to.have.all.keys('error', 'message');
    expect(res.text).not.to.match(/stack|\bat .+:\d+:\d+|node_modules|sequelize|sqlite/i);
  });
});

// jsonwebtoken is imported to make sure the library the app uses agrees with the hand-made forgeries.
describe('forgery helper', () => {
  it('produces tokens jsonwebtoken verifies with the same key', () => {
    const secret = randomBytes(32);
    const forged = forge({ alg: 'HS256', typ: 'JWT' }, { sub: '1' }, secret);
    expect(jwt.verify(forged, secret, { algorithms: ['HS256'] })).to.deep.equal({ sub: '1' });
  });
});
