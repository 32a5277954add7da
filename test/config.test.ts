import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dotenv from 'dotenv';
import { ensureEnvFile, loadConfig, readEnvironment, resolveEnvFilePath } from '../config.js';
import { projectRoot } from '../paths.js';
import { configError, expectRefused } from './helpers/config.js';

const random = () => randomBytes(48).toString('base64url');
/** The two secrets every configuration needs; everything else has a default. */
const secrets = () => ({ JWT_SECRET_KEY: random(), SESSION_SECRET: random() });

function exampleFile(name: string): Record<string, string> {
  return dotenv.parse(readFileSync(path.join(projectRoot, name)));
}

describe('configuration: loadConfig(env)', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig(secrets());
    expect(config.port).to.equal(3000);
    expect(config.databaseUrl).to.equal('sqlite:data/app.sqlite');
    expect(config.jwt.expiresInSeconds).to.equal(21_600);
    expect(config.jwt.issuer).to.equal('token-bridge');
    expect(config.jwt.audience).to.equal('api');
    expect(config.logLevel).to.equal('info');
    expect(config.env).to.equal('development');
    expect(config.isProduction).to.equal(false);
    expect(config.session.secureCookie).to.equal(false);
  });

  it('treats an empty value like an unset one', () => {
    const config = loadConfig({ ...secrets(), PORT: '', LOG_LEVEL: '' });
    expect(config.port).to.equal(3000);
    expect(config.logLevel).to.equal('info');
  });

  it('reads the documented variables', () => {
    const config = loadConfig({
      ...secrets(),
      PORT: '0',
      DATABASE_URL: 'sqlite::memory:',
      JWT_EXPIRES_IN: '30m',
      JWT_ISSUER: 'issuer-x',
      JWT_AUDIENCE: 'aud-y',
      LOG_LEVEL: 'silent',
    });
    expect(config).to.include({ port: 0, databaseUrl: 'sqlite::memory:', logLevel: 'silent' });
    expect(config.jwt).to.include({ expiresInSeconds: 1800, issuer: 'issuer-x', audience: 'aud-y' });
    expect(loadConfig({ ...secrets(), JWT_EXPIRES_IN: '3600' }).jwt.expiresInSeconds).to.equal(3600);
    expect(loadConfig({ ...secrets(), DATABASE_URL: 'postgres://app@db.example/app' }).databaseUrl).to.equal('postgres://app@db.example/app');
  });

  it('JWT_ALGORITHM defaults to HS256 and accepts ES256 and RS256', () => {
    expect(loadConfig(secrets()).jwt.algorithm).to.equal('HS256');
    expect(loadConfig({ ...secrets(), JWT_ALGORITHM: 'ES256' }).jwt.algorithm).to.equal('ES256');
    expect(loadConfig({ ...secrets(), JWT_ALGORITHM: 'RS256' }).jwt.algorithm).to.equal('RS256');
  });

  for (const value of ['none', 'HS512', 'es256', 'PS256']) {
    it(`refuses JWT_ALGORITHM=${value} with one line naming it`, () => {
      const err = configError({ ...secrets(), JWT_ALGORITHM: value });
      expect(err.variable).to.equal('JWT_ALGORITHM');
      expect(err.message).to.equal(`JWT_ALGORITHM: must be HS256, ES256 or RS256, not "${value}"`);
    });
  }

  it('refuses a missing JWT_SECRET_KEY, naming it', () => {
    expectRefused({ SESSION_SECRET: random() }, 'JWT_SECRET_KEY');
  });

  it('refuses a JWT_SECRET_KEY shorter than 32 bytes with a one-line ConfigError naming it', () => {
    expectRefused({ ...secrets(), JWT_SECRET_KEY: 'x'.repeat(31) }, 'JWT_SECRET_KEY');
    expect(loadConfig({ ...secrets(), JWT_SECRET_KEY: 'x'.repeat(32) }).jwt.key.symmetricKeySize).to.equal(32);
  });

  it('refuses a SESSION_SECRET shorter than 32 bytes with a one-line ConfigError naming it', () => {
    expectRefused({ ...secrets(), SESSION_SECRET: 'short' }, 'SESSION_SECRET');
  });

  it('accepts a comma-separated SESSION_SECRET list in order, trimmed, and checks every entry', () => {
    const [a, b] = [random(), random()];
    expect(loadConfig({ JWT_SECRET_KEY: random(), SESSION_SECRET: `${a}, ${b}` }).session.secrets).to.deep.equal([a, b]);
    expectRefused({ JWT_SECRET_KEY: random(), SESSION_SECRET: `${a},tooshort` }, 'SESSION_SECRET');
    expectRefused({ JWT_SECRET_KEY: random(), SESSION_SECRET: ' , ' }, 'SESSION_SECRET');
  });

  it('in production refuses the example keys from .env.example and .env.test', () => {
    for (const file of ['.env.example', '.env.test']) {
      const example = exampleFile(file);
      // Development accepts them (they are long enough) ...
      expect(() => loadConfig({ ...example, NODE_ENV: 'development' })).not.to.throw();
      // ... production does not, whichever of the two is the example one.
      expectRefused({ ...example, NODE_ENV: 'production' }, 'JWT_SECRET_KEY');
      expectRefused({ ...example, NODE_ENV: 'production', JWT_SECRET_KEY: random() }, 'SESSION_SECRET');
    }
  });

  it('in production refuses a long but low-variety key', () => {
    expectRefused({ ...secrets(), NODE_ENV: 'production', JWT_SECRET_KEY: 'ab'.repeat(32) }, 'JWT_SECRET_KEY');
  });

  it('in production accepts random 48-byte secrets and turns on secure cookies', () => {
    const config = loadConfig({ ...secrets(), NODE_ENV: 'production' });
    expect(config.isProduction).to.equal(true);
    expect(config.session.secureCookie).to.equal(true);
    expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET_KEY: randomBytes(48).toString('hex'), SESSION_SECRET: random() }).isProduction).to.equal(true);
  });

  const bad: Array<[string, string]> = [
    ['DATABASE_URL', 'not a url'],
    ['DATABASE_URL', 'mysql://u@h/db'],
    ['DATABASE_URL', 'postgres://'],
    ['DATABASE_URL', 'sqlite:'],
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['NODE_ENV', 'prod'],
    ['LOG_LEVEL', 'loud'],
    ['JWT_EXPIRES_IN', 'soon'],
    ['JWT_EXPIRES_IN', '0'],
  ];
  for (const [variable, value] of bad) {
    it(`refuses ${variable}=${value} with a one-line error naming ${variable}`, () => {
      const err = expectRefused({ ...secrets(), [variable]: value }, variable);
      expect(err.message.startsWith(`${variable}:`)).to.equal(true);
      expect(err.message.split(variable)).to.have.length(2, 'the variable is named once, not repeated');
    });
  }

  describe('PUBLIC_URL', () => {
    it('defaults to http://localhost:PORT', () => {
      expect(loadConfig(secrets()).publicUrl).to.equal('http://localhost:3000');
      const config = loadConfig({ ...secrets(), PORT: '8080' });
      expect(config.publicUrl).to.equal('http://localhost:8080');
      expect(config.publicOrigin).to.deep.equal({ protocol: 'http:', hostname: 'localhost', port: 8080 });
    });

    const accepted: Array<[string, string, { protocol: string; hostname: string; port: number }]> = [
      ['https://app.example.com', 'https://app.example.com', { protocol: 'https:', hostname: 'app.example.com', port: 443 }],
      ['https://app.example.com/', 'https://app.example.com', { protocol: 'https:', hostname: 'app.example.com', port: 443 }],
      ['https://App.Example.COM:443', 'https://app.example.com', { protocol: 'https:', hostname: 'app.example.com', port: 443 }],
      ['https://app.example.com:8443/', 'https://app.example.com:8443', { protocol: 'https:', hostname: 'app.example.com', port: 8443 }],
      ['http://10.0.0.5:3000', 'http://10.0.0.5:3000', { protocol: 'http:', hostname: '10.0.0.5', port: 3000 }],
      ['http://[::1]:3000/', 'http://[::1]:3000', { protocol: 'http:', hostname: '[::1]', port: 3000 }],
      ['HTTPS://bücher.example', 'https://xn--bcher-kva.example', { protocol: 'https:', hostname: 'xn--bcher-kva.example', port: 443 }],
    ];
    for (const [value, origin, parts] of accepted) {
      it(`accepts ${value} as the origin ${origin}`, () => {
        const config = loadConfig({ ...secrets(), PUBLIC_URL: value });
        expect(config.publicUrl).to.equal(origin);
        expect(config.publicOrigin).to.deep.equal(parts);
      });
    }

    it('accepts plain http:// in production (not refused; see README)', () => {
      expect(loadConfig({ ...secrets(), NODE_ENV: 'production', PUBLIC_URL: 'http://intranet.example:8080' }).publicUrl).to.equal('http://intranet.example:8080');
    });

    const refused: Array<[string, RegExp]> = [
      ['https://app.example.com/app', /no path/],
      ['https://app.example.com//', /no path/],
      ['https://app.example.com/?x=1', /query/],
      ['https://app.example.com?', /query/],
      ['https://app.example.com#top', /fragment/],
      ['https://app.example.com/#', /fragment/],
      ['https://admin:hunter2-secret@app.example.com', /credentials/],
      ['https://admin@app.example.com', /credentials/],
      ['https://@app.example.com', /credentials/],
      ['ftp://app.example.com', /http:\/\/ or https:\/\//],
      ['javascript:alert(1)', /http:\/\/ or https:\/\//],
      ['app.example.com', /http/],
      ['//app.example.com', /origin/],
      ['http:/app.example.com', /no path/],
      ['http:///app.example.com', /no path/],
      ['https://', /origin/],
      ['https://app.example.com:99999', /origin/],
      ['https://app.example.com\\evil', /no path/],
    ];
    for (const [value, reason] of refused) {
      it(`refuses ${value} with one line naming PUBLIC_URL once, without echoing the value`, () => {
        const err = expectRefused({ ...secrets(), PUBLIC_URL: value }, 'PUBLIC_URL');
        expect(err.message.startsWith('PUBLIC_URL: ')).to.equal(true);
        expect(err.message.split('PUBLIC_URL')).to.have.length(2);
        expect(err.message).to.match(reason);
        expect(err.message).not.to.contain('hunter2-secret');
      });
    }
  });

  it('never puts a secret value into the error message', () => {
    const key = `${'k'.repeat(10)}-secret-part`;
    const err = expectRefused({ JWT_SECRET_KEY: key, SESSION_SECRET: random() }, 'JWT_SECRET_KEY');
    expect(err.message).not.to.contain(key);
  });
});

describe('configuration: the .env file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tb-config-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('ensureEnvFile writes two different secrets of at least 32 bytes, readable only by the owner', () => {
    const file = path.join(dir, '.env');
    expect(ensureEnvFile(file)).to.equal(true);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    const parsed = dotenv.parse(readFileSync(file));
    expect(Buffer.byteLength(parsed.JWT_SECRET_KEY ?? '')).to.be.at.least(32);
    expect(Buffer.byteLength(parsed.SESSION_SECRET ?? '')).to.be.at.least(32);
    expect(parsed.JWT_SECRET_KEY).not.to.equal(parsed.SESSION_SECRET);
    // Good enough for production.
    expect(loadConfig({ ...parsed, NODE_ENV: 'production' }).isProduction).to.equal(true);
  });

  it('ensureEnvFile writes fresh secrets each time', () => {
    const [a, b] = [path.join(dir, 'a.env'), path.join(dir, 'b.env')];
    ensureEnvFile(a);
    ensureEnvFile(b);
    const [first, second] = [dotenv.parse(readFileSync(a)), dotenv.parse(readFileSync(b))];
    expect(first.JWT_SECRET_KEY).not.to.equal(second.JWT_SECRET_KEY);
    expect(first.SESSION_SECRET).not.to.equal(second.SESSION_SECRET);
  });

  it('ensureEnvFile leaves an existing file alone', () => {
    const file = path.join(dir, '.env');
    writeFileSync(file, 'JWT_ISSUER=mine\n', { mode: 0o644 });
    expect(ensureEnvFile(file)).to.equal(false);
    expect(readFileSync(file, 'utf8')).to.equal('JWT_ISSUER=mine\n');
  });

  it('ensureEnvFile neither writes through nor trips over a path that appeared meanwhile (dangling symlink)', () => {
    const target = path.join(dir, 'elsewhere.env');
    const file = path.join(dir, '.env');
    symlinkSync(target, file);
    expect(ensureEnvFile(file)).to.equal(false);
    expect(existsSync(target)).to.equal(false);
  });

  it('readEnvironment merges the file under the real environment: real env wins', () => {
    const file = path.join(dir, '.env');
    writeFileSync(file, 'TB_CONFIG_TEST_BOTH=from-file\nTB_CONFIG_TEST_FILE_ONLY=file-only\n');
    const saved = process.env.TB_CONFIG_TEST_BOTH;
    process.env.TB_CONFIG_TEST_BOTH = 'from-env';
    try {
      const env = readEnvironment(file);
      expect(env.TB_CONFIG_TEST_BOTH).to.equal('from-env');
      expect(env.TB_CONFIG_TEST_FILE_ONLY).to.equal('file-only');
    } finally {
      if (saved === undefined) delete process.env.TB_CONFIG_TEST_BOTH;
      else process.env.TB_CONFIG_TEST_BOTH = saved;
    }
    expect(readEnvironment(file).TB_CONFIG_TEST_BOTH).to.equal('from-file');
  });

  it('readEnvironment does not change process.env and copes with a missing file', () => {
    const file = path.join(dir, '.env');
    writeFileSync(file, 'TB_CONFIG_TEST_NOT_EXPORTED=1\n');
    readEnvironment(file);
    expect(process.env.TB_CONFIG_TEST_NOT_EXPORTED).to.equal(undefined);
    expect(readEnvironment(path.join(dir, 'missing.env'))).to.be.an('object');
  });

  it('ENV_FILE chooses the .env path (relative to the project folder); the default is the project .env', () => {
    expect(resolveEnvFilePath({})).to.equal(path.join(projectRoot, '.env'));
    expect(resolveEnvFilePath({ ENV_FILE: '' })).to.equal(path.join(projectRoot, '.env'));
    expect(resolveEnvFilePath({ ENV_FILE: '/tmp/x/.env' })).to.equal('/tmp/x/.env');
    expect(resolveEnvFilePath({ ENV_FILE: 'conf/dev.env' })).to.equal(path.join(projectRoot, 'conf/dev.env'));
  });
});
