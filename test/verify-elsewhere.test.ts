import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import { projectRoot } from '../paths.js';
import { freshDatabase } from './helpers/app.js';
import { uniqueName } from './helpers/browser.js';
import { runKeysCli } from './helpers/cli.js';
import { randomSecret, spawnNode, whenReady, type NodeProcess } from './helpers/process.js';
import { callApi, RemoteBrowser, startInstances, waitUntil, type Instances } from './helpers/remote-browser.js';

/** The fenced block of README.md whose first line is `firstLine`: the examples are tested as written. */
function readmeBlock(language: string, firstLine: string): string {
  const readme = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  const start = readme.indexOf(`\`\`\`${language}\n${firstLine}`);
  if (start < 0) throw new Error(`README.md has no ${language} block starting with ${firstLine}`);
  const body = readme.slice(start + language.length + 4);
  return body.slice(0, body.indexOf('\n```\n') + 1);
}

/** A python3 that has PyJWT with its crypto extra, or null (then the Python example is skipped, saying so). */
function pythonWithPyJwt(): string | null {
  for (const candidate of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(candidate, ['-c', 'import jwt, cryptography'], { stdio: 'ignore', timeout: 10_000 });
    if (probe.status === 0) return candidate;
  }
  return null;
}

const kidOf = (token: string) => jwt.decode(token, { complete: true })!.header.kid as string;

describe('verifying tokens in another service, as the README shows (ES256)', function () {
  this.timeout(120_000);

  const secret = randomSecret();
  const artifacts = path.join(projectRoot, 'test-artifacts');
  const serverFile = path.join(artifacts, `resource-server-${process.pid}.mjs`);
  const pythonFile = path.join(artifacts, `verify_token-${process.pid}.py`);
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let app: Instances;
  let base: string;
  let resource: NodeProcess;
  let resourceBase: string;
  const user = new RemoteBrowser();
  const username = uniqueName('elsewhere');
  let oldToken: string;
  let newToken: string | undefined;

  const keys = (...args: string[]) => runKeysCli(args, { databaseUrl: db.url, env: { JWT_SECRET_KEY: secret, JWT_ALGORITHM: 'ES256' } });
  const jwksKids = async () => ((await (await fetch(`${base}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

  before(async () => {
    db = await freshDatabase();
    app = await startInstances(1, { DATABASE_URL: db.url, JWT_ALGORITHM: 'ES256', JWT_SECRET_KEY: secret });
    base = app.servers[0]!.baseUrl;
    expect((await user.register(base, username)).status).to.equal(302);
    oldToken = await user.token(base);

    // Step 1 of the README's rotation: publish the next key before any verifier has fetched the JWKS.
    const added = await keys('add');
    expect(added.code, added.stderr).to.equal(0);
    await waitUntil(async () => (await jwksKids()).length === 2, 5_000);

    mkdirSync(artifacts, { recursive: true });
    writeFileSync(serverFile, readmeBlock('js', '// resource-server.mjs'));
    writeFileSync(pythonFile, readmeBlock('python', '# verify_token.py'));
    resource = spawnNode([serverFile], { TOKEN_BRIDGE_URL: base, PORT: '0' });
    const port = await whenReady(resource, () => /listening on port (\d+)/.exec(resource.stdout())?.[1], 30_000);
    resourceBase = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await resource?.stop();
    await app?.stopAll();
    await db?.cleanup();
    rmSync(serverFile, { force: true });
    rmSync(pythonFile, { force: true });
  });

  it('the jose resource server accepts a token with the served JWKS alone and refuses forgeries', async () => {
    const ok = await callApi(resourceBase, oldToken, '/');
    expect(ok.status, ok.text).to.equal(200);
    expect(JSON.parse(ok.text)).to.deep.include({ username, roles: [] });
    const [h, p, s] = oldToken.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const raised = Buffer.from(JSON.stringify({ ...payload, roles: ['admin'] })).toString('base64url');
    for (const forged of [`${h}.${raised}.${s}`, `${h}.${p}.${s.slice(0, -4)}AAAA`, 'garbage', jwt.sign(payload, secret, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'JWT', kid: kidOf(oldToken) } as jwt.JwtHeader })]) {
      expect((await callApi(resourceBase, forged, '/')).status).to.equal(401);
    }
  });

  it('goes on through a rotation: the new kid is accepted at once, the old tokens still are, nobody signs in again', async () => {
    const rotated = await keys('rotate');
    expect(rotated.code, rotated.stderr).to.equal(0);
    await waitUntil(async () => kidOf(await user.token(base)) !== kidOf(oldToken), 5_000);
    newToken = await user.token(base);
    expect(kidOf(newToken)).to.not.equal(kidOf(oldToken));
    for (const token of [newToken, oldToken]) {
      expect((await callApi(resourceBase, token, '/')).status).to.equal(200);
      expect((await callApi(base, token)).status).to.equal(200);
    }
  });

  it('the PyJWT example verifies the same tokens and refuses a forgery (pending where python3 has no PyJWT)', function () {
    const python = pythonWithPyJwt();
    if (!python) this.skip();
    const run = (token: string) =>
      spawnSync(python!, [pythonFile, token], { env: { PATH: process.env.PATH ?? '', TOKEN_BRIDGE_URL: base }, encoding: 'utf8', timeout: 30_000 });
    for (const token of [oldToken, newToken ?? oldToken]) {
      const r = run(token);
      expect(r.status, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout)).to.deep.include({ username, roles: [] });
    }
    const [h, p, s] = oldToken.split('.') as [string, string, string];
    const refused = run(`${h}.${p}.${s.slice(0, -4)}AAAA`);
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.match(/^refused: /);
  });
});
