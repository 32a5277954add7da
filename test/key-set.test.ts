import { expect } from 'chai';
import { createHmac, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import jwt from 'jsonwebtoken';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import request from 'supertest';
import { AuditLog } from '../services/audit-log.js';
import { KeySetService } from '../services/signing-keys.js';
import { freshDatabase, startTestApp, type TestApp } from './helpers/app.js';
import { userWithToken } from './helpers/browser.js';
import { runKeysCli } from './helpers/cli.js';
import { TestClock } from './helpers/clock.js';
import { randomSecret, runUntilExit, tempDir } from './helpers/process.js';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const kidOf = (token: string) => (jwt.decode(token, { complete: true })!.header.kid as string);

async function apiStatus(t: TestApp, token: string): Promise<number> {
  const res = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`);
  if (res.status === 401) expect(res.headers['www-authenticate']).to.match(/error="invalid_token"/);
  return res.status;
}

for (const alg of ['ES256', 'RS256'] as const) {
  describe(`${alg} tokens and the JWKS`, () => {
    let t: TestApp;
    let token: string;
    before(async () => {
      t = await startTestApp({ env: { JWT_ALGORITHM: alg } });
      ({ token } = await userWithToken(t.server));
    });
    after(() => t.close());

    it('publishes the current key with public members only, cacheable at most 600 s', async () => {
      const res = await request(t.server).get('/.well-known/jwks.json').expect(200);
      expect(res.headers['cache-control']).to.equal('public, max-age=300');
      const { keys } = res.body as JSONWebKeySet;
      expect(keys).to.have.length(1);
      expect(keys[0]).to.include({ kty: alg === 'ES256' ? 'EC' : 'RSA', alg, use: 'sig', kid: kidOf(token) });
      for (const member of PRIVATE_MEMBERS) expect(keys[0]).to.not.have.property(member);
    });

    it('mints tokens with header {alg, typ, kid} that jose verifies with the served JWKS alone', async () => {
      expect(jwt.decode(token, { complete: true })!.header).to.deep.equal({ alg, typ: 'JWT', kid: kidOf(token) });
      const jwks = createLocalJWKSet((await request(t.server).get('/.well-known/jwks.json')).body as JSONWebKeySet);
      const { payload } = await jwtVerify(token, jwks, { algorithms: [alg], issuer: t.config.jwt.issuer, audience: t.config.jwt.audience });
      expect(payload.sub).to.be.a('string');
      expect(await apiStatus(t, token)).to.equal(200);
    });

    describe('refuses forgeries', () => {
      const parts = () => token.split('.') as [string, string, string];
      const header = () => jwt.decode(token, { complete: true })!.header as unknown as Record<string, unknown>;
      const payload = () => jwt.decode(token) as Record<string, unknown>;
      const signGenuine = (extra: Record<string, unknown>) =>
        jwt.sign(payload(), t.signingKeys!.signer().privateKey, { algorithm: alg, header: { ...header(), ...extra } as unknown as jwt.JwtHeader });

      it('HS256 with the public key as the HMAC secret (algorithm confusion)', async () => {
        const publicPem = createPublicKey(t.signingKeys!.signer().privateKey).export({ format: 'pem', type: 'spki' }) as string;
        const jwk = JSON.stringify(((await request(t.server).get('/.well-known/jwks.json')).body as JSONWebKeySet).keys[0]);
        for (const secret of [publicPem, publicPem.trim(), jwk]) {
          const signingInput = `${b64({ alg: 'HS256', typ: 'JWT', kid: kidOf(token) })}.${parts()[1]}`;
          const forged = `${signingInput}.${createHmac('sha256', secret).update(signingInput).digest('base64url')}`;
          expect(await apiStatus(t, forged)).to.equal(401);
        }
      });

      it('HS256 signed with JWT_SECRET_KEY (the configured algorithm only)', async () => {
        expect(await apiStatus(t, jwt.sign(payload(), t.config.jwt.key, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'JWT', kid: kidOf(token) } as jwt.JwtHeader }))).to.equal(401);
      });

      it('an unknown kid, and our kid with a signature by another key', async () => {
        const other = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
        expect(await apiStatus(t, jwt.sign(payload(), other.privateKey, { algorithm: alg, header: { alg, typ: 'JWT', kid: 'unknown' } as jwt.JwtHeader }))).to.equal(401);
        expect(await apiStatus(t, jwt.sign(payload(), other.privateKey, { algorithm: alg, header: header() as unknown as jwt.JwtHeader }))).to.equal(401);
        expect(await apiStatus(t, signGenuine({ kid: '../../etc/passwd' }))).to.equal(401);
      });

      for (const member of ['jwk', 'jku', 'x5u', 'x5c', 'crit']) {
        it(`a genuine signature with a ${member} header`, async () => {
          const value = member === 'jwk' ? { kty: 'EC' } : member === 'crit' ? ['exp'] : member === 'x5c' ? ['MIIB'] : 'https://evil.example/keys';
          expect(await apiStatus(t, signGenuine({ [member]: value }))).to.equal(401);
        });
      }

      it('alg none, with and without a signature part', async () => {
        const body = parts()[1];
        for (const forged of [`${b64({ alg: 'none', typ: 'JWT', kid: kidOf(token) })}.${body}.`, `${b64({ alg: 'none', kid: kidOf(token) })}.${body}.${parts()[2]}`]) {
          expect(await apiStatus(t, forged)).to.equal(401);
        }
      });
    });
  });
}

describe('ES256 key set on one database shared by two instances', function () {
  this.timeout(60_000);
  const clock = new TestClock();
  const env = { JWT_ALGORITHM: 'ES256' };
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let a: TestApp;
  let b: TestApp;
  let oldToken: string;
  let oldKid: string;
  let keySet: KeySetService;
  before(async () => {
    db = await freshDatabase();
    [a, b] = await Promise.all([startTestApp({ databaseUrl: db.url, env, clock: clock.read }), startTestApp({ databaseUrl: db.url, env, clock: clock.read })]);
    keySet = new KeySetService({ store: a.signingKeys!.keySet, audit: new AuditLog(a.database, clock.read), keys: a.signingKeys! });
    oldToken = (await userWithToken(a.server)).token;
    oldKid = kidOf(oldToken);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await db?.cleanup();
  });

  it('two instances starting together create one current key, not two', async () => {
    const rows = await a.database.signingKeys.findAll();
    expect(rows.map((r) => r.state)).to.deep.equal(['current']);
    expect(b.signingKeys!.signer().kid).to.equal(oldKid);
    expect(await apiStatus(b, oldToken)).to.equal(200);
  });

  it('stores no private key material in any column (no PEM, no JWK private member, no DER)', async () => {
    const der = a.signingKeys!.signer().privateKey.export({ format: 'der', type: 'pkcs8' });
    const d = a.signingKeys!.signer().privateKey.export({ format: 'jwk' }).d!;
    const [rows] = await a.database.sequelize.query('SELECT * FROM signing_keys');
    for (const row of rows as Record<string, unknown>[]) {
      for (const value of Object.values(row)) {
        const text = String(value);
        expect(text).to.not.match(/PRIVATE KEY|"d"\s*:/);
        for (const secret of [d, der.toString('base64'), der.toString('base64url'), der.toString('hex')]) expect(text).to.not.contain(secret);
      }
    }
  });

  it('rotation: new tokens get the new kid on both instances, old tokens stay valid, both keys published', async () => {
    const { current, previous } = await keySet.rotate({ ip: null, userAgent: 'test' });
    expect(previous).to.equal(oldKid);
    const fresh = (await userWithToken(a.server)).token;
    expect(kidOf(fresh)).to.equal(current);
    clock.advance(2_100);
    await request(b.server).get('/.well-known/jwks.json'); // b reloads: its copy is stale by the clock
    expect(kidOf((await userWithToken(b.server)).token)).to.equal(current);
    for (const t of [a, b]) {
      expect(await apiStatus(t, oldToken)).to.equal(200);
      expect(await apiStatus(t, fresh)).to.equal(200);
    }
    const kids = ((await request(b.server).get('/.well-known/jwks.json')).body as JSONWebKeySet).keys.map((k) => k.kid);
    expect(kids).to.have.members([oldKid, current]);
  });

  it('restart keeps the keys: a new instance publishes the same kids and accepts the old token', async () => {
    const c = await startTestApp({ databaseUrl: db.url, env, clock: clock.read });
    try {
      expect(await apiStatus(c, oldToken)).to.equal(200);
      expect(await a.database.signingKeys.count()).to.equal(2);
    } finally {
      await c.close();
    }
  });

  it('revoke: its tokens are refused at once on this instance and within 2 s (by the clock) on the other', async () => {
    expect(await apiStatus(b, oldToken)).to.equal(200); // cached on b
    await keySet.revoke(oldKid, { ip: null, userAgent: 'test' });
    expect(await apiStatus(a, oldToken)).to.equal(401);
    clock.advance(2_100);
    expect(await apiStatus(b, oldToken)).to.equal(401);
    const kids = ((await request(b.server).get('/.well-known/jwks.json')).body as JSONWebKeySet).keys.map((k) => k.kid);
    expect(kids).to.not.include(oldKid);
    const events = (await a.database.auditEvents.findAll()).map((e) => e.event);
    expect(events).to.include.members(['key_rotated', 'key_revoked']);
  });
});

describe('npm run keys and JWT_SECRET_KEY changes (ES256)', function () {
  this.timeout(120_000);
  const OLD = randomSecret();
  const NEW = randomSecret();
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let token: string;
  before(async () => {
    db = await freshDatabase();
    const t = await startTestApp({ databaseUrl: db.url, env: { JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY: OLD } });
    token = (await userWithToken(t.server)).token;
    await t.close();
  });
  after(() => db?.cleanup());

  it('list, add, rotate and revoke through the CLI, each audited', async () => {
    const cli = (args: string[]) => runKeysCli(args, { databaseUrl: db.url, env: { JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY: OLD } });
    const added = await cli(['add']);
    expect(added.code, added.stderr).to.equal(0);
    const nextKid = /added (\S+)/.exec(added.stdout)![1]!;
    const listed = await cli(['list']);
    expect(listed.stdout).to.match(new RegExp(`${nextKid}\\tES256\\tnext`));
    const rotated = await cli(['rotate']);
    expect(rotated.stdout).to.contain(`current ${nextKid}`);
    const unknown = await cli(['revoke', 'nope']);
    expect(unknown.code).to.equal(1);
    expect(unknown.stderr.trim().split('\n')).to.have.length(1);
  });

  it('a wrong JWT_SECRET_KEY stops a real server at start with one line', async () => {
    const dir = tempDir();
    writeFileSync(`${dir.dir}/.env`, ''); // present, so the only stderr line is the refusal
    try {
      const result = await runUntilExit({
        ENV_FILE: `${dir.dir}/.env`, DATABASE_URL: db.url, JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY: NEW, SESSION_SECRET: randomSecret(), LOG_LEVEL: 'silent',
      });
      expect(result.code).to.equal(1);
      const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines).to.have.length(1);
      expect(lines[0]).to.match(/^signing keys error: signing key \S+ cannot be decrypted with any JWT_SECRET_KEY entry/);
    } finally {
      dir.cleanup();
    }
  });

  it('reencrypt with JWT_SECRET_KEY=new,old, then new alone still starts and verifies old tokens', async () => {
    const done = await runKeysCli(['reencrypt'], { databaseUrl: db.url, env: { JWT_SECRET_KEY: `${NEW},${OLD}` } });
    expect(done.code, done.stderr).to.equal(0);
    const t = await startTestApp({ databaseUrl: db.url, env: { JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY: NEW } });
    try {
      expect(await apiStatus(t, token)).to.equal(200);
    } finally {
      await t.close();
    }
  });
});

describe('private key encryption at rest', () => {
  it('refuses a stored key whose GCM tag was cut short (a forgery with a guessable tag)', async () => {
    const { encryptPrivateKey, decryptPrivateKey, KeyDecryptionError } = await import('../services/key-encryption.js');
    const secret = 'a-secret-of-at-least-32-bytes-0123456789';
    const stored = encryptPrivateKey(Buffer.from('pkcs8 bytes'), 'kid-1', secret);
    expect(decryptPrivateKey(stored, 'kid-1', [secret]).toString()).to.equal('pkcs8 bytes');
    const parts = stored.split('.');
    parts[3] = Buffer.from(parts[3]!, 'base64url').subarray(0, 4).toString('base64url');
    expect(() => decryptPrivateKey(parts.join('.'), 'kid-1', [secret])).to.throw(KeyDecryptionError);
    expect(() => decryptPrivateKey(stored, 'kid-2', [secret]), 'moved to another row').to.throw(KeyDecryptionError);
  });
});
