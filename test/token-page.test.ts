import { expect } from 'chai';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import ejs from 'ejs';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import type { PublicJwk } from '../services/signing-keys.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { browser, registerUser } from './helpers/browser.js';
import { randomSecret } from './helpers/process.js';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
const PUBLIC_URL = 'https://tokens.example.com:8443';

/** What a token page shows, read from its HTML (`null` for what is not on it). */
interface TokenPage {
  html: string;
  token: string;
  /** The text of an element by id, as escaped in the HTML. */
  text(id: string): string | null;
  /** The "Signature" fact. */
  signature: string;
}

/** A newly registered user's token page, asked for with a forged Host header (PUBLIC_URL must win). */
async function signedInTokenPage(t: TestApp): Promise<TokenPage> {
  const agent = browser(t.server);
  await registerUser(agent);
  const res = await agent.get('/token').set('Host', 'evil.example').set('X-Forwarded-Host', 'evil-forwarded.example').expect(200);
  const html = res.text;
  const text = (id: string) => new RegExp(`<code id="${id}">([^<]*)</code>`).exec(html)?.[1] ?? null;
  const token = /<textarea id="token"[^>]*>([^<]+)<\/textarea>/.exec(html)?.[1];
  const signature = /<dt>Signature<\/dt>\s*<dd>([\s\S]*?)<\/dd>/.exec(html)?.[1];
  expect(token).to.match(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  expect(signature).to.be.a('string');
  return { html, token: token!, text, signature: signature! };
}

for (const alg of ['ES256', 'RS256'] as const) {
  describe(`token page with ${alg}: the public key that verifies the token`, () => {
    let t: TestApp;
    let page: TokenPage;
    let kid: string;
    before(async () => {
      t = await startTestApp({ env: { JWT_ALGORITHM: alg, PUBLIC_URL, TRUST_PROXY: 'true' } });
      page = await signedInTokenPage(t);
      kid = jwt.decode(page.token, { complete: true })!.header.kid!;
    });
    after(() => t.close());

    it('shows as its JWK exactly the JWKS entry with the token’s kid, pretty-printed', async () => {
      const { keys } = (await request(t.server).get('/.well-known/jwks.json').expect(200)).body as { keys: PublicJwk[] };
      const entry = keys.find((k) => k.kid === kid);
      expect(entry, 'the token’s kid is in the JWKS').to.include({ alg, use: 'sig', kty: alg === 'ES256' ? 'EC' : 'RSA' });
      expect(page.text('public-jwk')).to.equal(ejs.escapeXML(JSON.stringify(entry, null, 2)));
      expect(page.text('key-kid')).to.equal(kid);
    });

    it('shows a PEM (SPKI) public key that verifies the page’s token and has no private part', () => {
      const pem = page.text('public-pem');
      expect(pem).to.match(/^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PUBLIC KEY-----$/);
      const claims = jwt.verify(page.token, pem!, { algorithms: [alg], issuer: t.config.jwt.issuer, audience: t.config.jwt.audience });
      expect(claims).to.have.property('jti');
      expect(() => createPrivateKey(pem!), 'a PEM that parses as a private key').to.throw();
      expect(createPublicKey(pem!).equals(t.signingKeys!.verifier(kid)!), 'the key of the token’s kid').to.equal(true);
    });

    it('puts no private key member or private key material anywhere in the page', () => {
      expect(page.text('public-jwk'), 'the key is shown').to.be.a('string');
      const privateJwk = t.signingKeys!.signer().privateKey.export({ format: 'jwk' });
      const der = t.signingKeys!.signer().privateKey.export({ format: 'der', type: 'pkcs8' });
      expect(t.signingKeys!.signer().kid).to.equal(kid);
      expect(page.html).to.not.match(/PRIVATE KEY/);
      for (const member of PRIVATE_MEMBERS) {
        expect(page.html).to.not.contain(`&#34;${member}&#34;:`).and.to.not.contain(`"${member}":`);
        const value = privateJwk[member as keyof typeof privateJwk];
        if (typeof value === 'string') expect(page.html, `the private ${member}`).to.not.contain(value);
      }
      for (const encoded of [der.toString('base64'), der.toString('base64url')]) expect(page.html).to.not.contain(encoded.slice(-64));
    });

    it('gives the JWKS address from PUBLIC_URL, never from the Host or X-Forwarded-Host header', () => {
      expect(page.html).to.contain(`<a href="${PUBLIC_URL}/.well-known/jwks.json"><code>${PUBLIC_URL}/.well-known/jwks.json</code></a>`);
      expect(page.html).to.not.contain('evil');
    });

    it('says the key can verify but never mint, so the key (not the token) is safe in a JWT debugger', () => {
      expect(page.html).to.contain('It can verify tokens but never mint them');
      expect(page.html).to.contain('safe to paste into a JWT debugger: paste the key there, never the token');
    });

    it('offers a copy button for the JWK and for the PEM, hidden until the script shows them', () => {
      for (const target of ['public-jwk', 'public-pem']) {
        expect(page.html).to.match(new RegExp(`<p class="token-actions js-only" hidden>\\s*<button type="button" class="secondary" id="[\\w-]+" data-copy-target="${target}">`));
      }
    });

    it('states the real algorithm and kid in the Signature fact, checked with the public key', () => {
      expect(page.signature).to.contain('Verified by this server');
      expect(page.signature).to.contain(`${alg} with key <code>${kid}</code>, checked with its public key`);
      expect(page.signature).to.not.contain('HS256').and.to.not.contain('secret');
    });
  });
}

describe('token page with HS256: the secret is never shown', () => {
  const secrets = [randomSecret(), randomSecret()];
  let t: TestApp;
  let page: TokenPage;
  before(async () => {
    t = await startTestApp({ env: { JWT_SECRET_KEY: secrets.join(','), PUBLIC_URL } });
    page = await signedInTokenPage(t);
  });
  after(() => t.close());

  it('shows no key section, and says why the secret is never shown', () => {
    expect(page.text('public-jwk')).to.equal(null);
    expect(page.text('public-pem')).to.equal(null);
    expect(page.html).to.not.contain('BEGIN PUBLIC KEY').and.to.not.contain('jwks.json').and.to.not.contain('Copy JWK');
    expect(page.html).to.contain('anyone holding it could mint a token for any user');
    expect(page.html).to.contain('This page verifies the token for you instead');
  });

  it('never puts any JWT_SECRET_KEY value in the page', () => {
    expect(page.html, 'the signing key section is there').to.contain('<h2 id="key-heading">Signing key</h2>');
    expect(jwt.verify(page.token, secrets[0]!, { algorithms: ['HS256'] }), 'the page’s token is signed with the first secret').to.have.property('jti');
    for (const secret of secrets) expect(page.html).to.not.contain(secret).and.to.not.contain(secret.slice(0, 16));
  });

  it('states HS256, checked with the server’s secret key, in the Signature fact', () => {
    expect(page.signature).to.contain('<span class="badge ok">Verified by this server</span> HS256, checked with this server’s secret key');
    expect(page.signature).to.not.contain('public key');
  });
});
