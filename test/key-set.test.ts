import { expect } from 'chai';
import { createHmac, createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import jwt from 'jsonwebtoken';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import request from 'supertest';
import { openDatabase, type Database } from '../models/database.js';
import { AuditLog } from '../services/audit-log.js';
import { KeySetService, KeySetStore } from '../services/signing-keys.js';
import { freshDatabase, startTestApp, type TestApp } from './helpers/app.js';
import { userWithToken } from './helpers/browser.js';
import { runKeysCli } from './helpers/cli.js';
import { TestClock } from './helpers/clock.js';
import { randomSecret, runUntilExit, tempDir } from './helpers/process.js';
import { waitUntil } from './helpers/remote-browser.js';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const kidOf = (token: string) => (jwt.decode(token, { complete: true })!.header.kid as string);

async function apiStatus(t: TestApp, token: string): Promise<number> {
  const res = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`);
  if (res.status === 401) expect(res.headers['www-authenticate']).to.match(/error="invalid_token"/);
  return res.status;
}

/** Why /api refused a token (its `error_description`), or 'accepted'. */
async function apiRefusal(t: TestApp, token: string): Promise<string> {
  const res = await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`);
  if (res.status === 200) return 'accepted';
  expect(res.status).to.equal(401);
  return /error_description="([^"]*)"/.exec(String(res.headers['www-authenticate']))?.[1] ?? '';
}

/** The keys GET /.well-known/jwks.json serves. */
async function publishedKeys(t: TestApp): Promise<JSONWebKeySet['keys']> {
  return ((await request(t.server).get('/.well-known/jwks.json').expect(200)).body as JSONWebKeySet).keys;
}

const KEY_EVENTS = ['key_added', 'key_rotated', 'key_revoked', 'keys_reencrypted'];

/** The key-set audit rows, oldest first, as `event detail (user agent)`. */
async function keyAudit(database: Database): Promise<string[]> {
  const rows = await database.auditEvents.findAll({ where: { event: KEY_EVENTS }, order: [['id', 'ASC']] });
  return rows.map((r) => `${r.event} ${r.detail ?? '-'} (${r.userAgent ?? '-'}${r.ip === null ? '' : ` ${r.ip}`})`);
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
    const before = await publishedKeys(b);
    expect(before.map((k) => k.kid)).to.have.members([oldKid, b.signingKeys!.signer().kid]);
    const c = await startTestApp({ databaseUrl: db.url, env, clock: clock.read });
    try {
      const after = await publishedKeys(c);
      expect(after.map((k) => k.kid)).to.have.members(before.map((k) => k.kid));
      expect(after, 'the same public keys under those kids').to.have.deep.members(before);
      expect(c.signingKeys!.signer().kid).to.equal(b.signingKeys!.signer().kid);
      expect(await apiStatus(c, oldToken)).to.equal(200);
      expect(await a.database.signingKeys.count(), 'no key made at the restart').to.equal(2);
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

describe('instances racing to create the first key (ES256)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp(); // HS256: a migrated database with no key yet
  });
  after(() => t?.close());

  it('eight first starts at once: exactly one creates the current key, the others find it and none fails', async () => {
    const settings = { ...t.config.jwt, algorithm: 'ES256' as const };
    // Each call reads "no current key" before any has inserted one, so all eight try to insert.
    const created = await Promise.all(Array.from({ length: 8 }, () => new KeySetStore(t.database, settings, Date.now).ensureCurrent()));
    const rows = await t.database.signingKeys.findAll();
    expect(rows.map((r) => r.state)).to.deep.equal(['current']);
    expect(created.filter((kid) => kid !== null)).to.deep.equal([rows[0]!.kid]);
  });
});

describe('a previous key (ES256) leaves the key set by itself once its last token has expired', () => {
  const clock = new TestClock();
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { JWT_ALGORITHM: 'ES256' }, clock: clock.read });
  });
  after(() => t?.close());

  it('published and verifying until retirement + token lifetime + clock tolerance, then out of the JWKS and refused', async () => {
    const { token } = await userWithToken(t.server);
    const oldKid = kidOf(token);
    const oldKey = t.signingKeys!.signer().privateKey;
    const keySet = new KeySetService({ store: t.signingKeys!.keySet, audit: new AuditLog(t.database, clock.read), keys: t.signingKeys! });
    const { current, previous } = await keySet.rotate({ ip: null, userAgent: 'test' });
    expect(previous).to.equal(oldKid);
    const row = (await t.database.signingKeys.findByPk(oldKid))!;
    expect(row.state).to.equal('previous');
    const lifetimeMs = (t.config.jwt.expiresInSeconds + t.config.jwt.clockToleranceSeconds) * 1000;
    const verifyUntil = row.retiredAt!.getTime() + lifetimeMs;
    expect(row.verifyUntil!.getTime()).to.equal(verifyUntil);
    // The old key's signature on claims that are not expired: when it is refused, only the key can be why.
    const claims = jwt.decode(token) as Record<string, unknown>;
    const signedByOldKeyNow = () => {
      const iat = Math.floor(clock.read() / 1000);
      return jwt.sign({ ...claims, iat, exp: iat + 3600, jti: randomUUID() }, oldKey, { algorithm: 'ES256', header: { alg: 'ES256', typ: 'JWT', kid: oldKid } as jwt.JwtHeader });
    };

    // The last second of the old token's life (the clock stood still from its minting to the rotation).
    clock.advance(verifyUntil - 1_000 - clock.read());
    expect(t.signingKeys!.verifier(oldKid), 'verifies in its last second').to.not.equal(undefined);
    expect(t.signingKeys!.jwks().map((k) => k.kid)).to.have.members([oldKid, current]);
    expect((await publishedKeys(t)).map((k) => k.kid)).to.have.members([oldKid, current]);
    expect(await apiRefusal(t, token)).to.equal('accepted');
    expect(await apiRefusal(t, signedByOldKeyNow())).to.equal('accepted');

    clock.advance(1_001);
    // In memory first (no reload has run since the clock moved), then as served after a reload.
    expect(t.signingKeys!.verifier(oldKid), 'its verify window has ended').to.equal(undefined);
    expect(t.signingKeys!.jwks().map((k) => k.kid)).to.deep.equal([current]);
    expect((await publishedKeys(t)).map((k) => k.kid)).to.deep.equal([current]);
    expect(await apiStatus(t, token)).to.equal(401);
    expect(await apiRefusal(t, signedByOldKeyNow())).to.equal('The token signing key is not accepted');
    expect((await t.database.signingKeys.findByPk(current))!.state, 'the current key is untouched').to.equal('current');
  });
});

describe("npm run keys -- revoke on a running app's database (ES256)", function () {
  this.timeout(60_000);
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let t: TestApp;
  before(async () => {
    db = await freshDatabase();
    t = await startTestApp({ databaseUrl: db.url, env: { JWT_ALGORITHM: 'ES256' } });
  });
  after(async () => {
    await t?.close();
    await db?.cleanup();
  });

  it('the running app refuses the revoked key\'s tokens within 5 s, the CLI says so, and a second revoke is no change', async () => {
    const cli = (args: string[]) => runKeysCli(args, { databaseUrl: db.url, env: { JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY: t.config.jwt.secrets.join(',') } });
    const { agent, token } = await userWithToken(t.server);
    const kid = kidOf(token);
    expect(await apiRefusal(t, token), 'accepted (and cached) before the revoke').to.equal('accepted');

    const revoked = await cli(['revoke', kid]);
    expect(revoked.code, revoked.stderr).to.equal(0);
    const promoted = new RegExp(`^revoked ${kid}; current now (\\S+)$`).exec(revoked.stdout.trim())?.[1];
    expect(promoted, revoked.stdout).to.be.a('string').and.not.equal(kid);
    await waitUntil(async () => (await apiStatus(t, token)) === 401, 5_000);
    expect(await apiRefusal(t, token)).to.equal('The token signing key is not accepted');
    expect(t.signingKeys!.jwks().map((k) => k.kid)).to.not.include(kid);
    const fresh = ((await agent.get('/auth/token').expect(200)).body as { token: string }).token;
    expect(kidOf(fresh), 'the app signs with the key the CLI promoted').to.equal(promoted);
    expect(await apiRefusal(t, fresh)).to.equal('accepted');

    const again = await cli(['revoke', kid]);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout.trim()).to.equal(`${kid} was revoked already (no change)`);
    expect(await keyAudit(t.database), 'one audit row: the second revoke changed nothing').to.deep.equal([`key_revoked ${kid} (current now ${promoted}) (keys-cli)`]);
  });
});

describe('npm run keys and JWT_SECRET_KEY changes (ES256)', function () {
  this.timeout(120_000);
  const OLD = randomSecret();
  const NEW = randomSecret();
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let database: Database;
  let token: string;
  before(async () => {
    db = await freshDatabase();
    const t = await startTestApp({ databaseUrl: db.url, env: { JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY: OLD } });
    token = (await userWithToken(t.server)).token;
    await t.close();
    database = await openDatabase(db.url);
  });
  after(async () => {
    await database?.close();
    await db?.cleanup();
  });

  it('list, add, rotate, revoke and reencrypt through the CLI, each change audited with its kids', async () => {
    const cli = (args: string[]) => runKeysCli(args, { databaseUrl: db.url, env: { JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY: OLD } });
    const ok = async (args: string[]) => {
      const result = await cli(args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).to.equal(0);
      return result.stdout.trim();
    };
    const states = async () => Object.fromEntries((await ok(['list'])).split('\n').slice(1).map((line) => line.split('\t')).map(([kid, , state]) => [kid, state]));
    const firstKid = kidOf(token);
    const audited: string[] = [];
    expect(await states()).to.deep.equal({ [firstKid]: 'current' });

    const nextKid = /^added (\S+) /.exec(await ok(['add']))![1]!;
    audited.push(`key_added ${nextKid} (keys-cli)`);
    expect(await keyAudit(database)).to.deep.equal(audited);
    expect(await states()).to.deep.equal({ [firstKid]: 'current', [nextKid]: 'next' });

    expect(await ok(['rotate'])).to.equal(`current ${nextKid}; previous ${firstKid} verifies its tokens until they expire`);
    audited.push(`key_rotated ${firstKid} -> ${nextKid} (keys-cli)`);
    expect(await keyAudit(database)).to.deep.equal(audited);
    expect(await states()).to.deep.equal({ [firstKid]: 'previous', [nextKid]: 'current' });

    const spareKid = /^added (\S+) /.exec(await ok(['add']))![1]!;
    audited.push(`key_added ${spareKid} (keys-cli)`);
    expect(await ok(['revoke', spareKid])).to.equal(`revoked ${spareKid}`);
    audited.push(`key_revoked ${spareKid} (keys-cli)`);
    expect(await keyAudit(database)).to.deep.equal(audited);
    expect(await states()).to.deep.equal({ [firstKid]: 'previous', [nextKid]: 'current', [spareKid]: 'revoked' });

    const unknown = await cli(['revoke', 'nope']);
    expect(unknown.code).to.equal(1);
    expect(unknown.stderr.trim().split('\n')).to.have.length(1);
    expect(await ok(['revoke', spareKid])).to.equal(`${spareKid} was revoked already (no change)`);
    expect(await keyAudit(database), 'refused and no-change revokes write nothing').to.deep.equal(audited);

    // The revoked key's private key was erased: two are left to rewrite. The detail is that count (no kids).
    expect(await ok(['reencrypt'])).to.match(/^re-encrypted 2 private key\(s\) /);
    audited.push('keys_reencrypted 2 (keys-cli)');
    expect(await keyAudit(database)).to.deep.equal(audited);
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
