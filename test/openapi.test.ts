import { Validator } from '@seriousme/openapi-schema-validator';
import { expect } from 'chai';
import type { Express } from 'express';
import request from 'supertest';
import type { ZodType } from 'zod';
import * as schemas from '../routes/api-schemas.js';
import { openApiDocument, type OpenApiDocument } from '../routes/openapi.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { userWithToken } from './helpers/browser.js';
import { responseContract } from './helpers/contract.js';

/** The contract's routes ("API", "Signing keys …", "Operations", "API description"): each must be described. */
const CONTRACT_ROUTES = [
  'GET /api/me',
  'GET /api/users',
  'GET /api/openapi.json',
  'GET /auth/token',
  'POST /auth/introspect',
  'GET /.well-known/jwks.json',
  'GET /healthz',
  'GET /readyz',
] as const;

/**
 * Absolute URLs in the Swagger UI bundle that the page never loads: spec and
 * namespace identifiers, links in messages, example values of formats and the
 * link templates of its markdown linkifier. The online validator is turned off
 * in public/docs.js (`validatorUrl: null`). A new origin here (a CDN, a font
 * host, telemetry) fails the test until someone has looked at it; the browser
 * test (test/browser/docs.test.ts) proves at run time that no request leaves.
 */
const BUNDLE_ORIGINS_NEVER_LOADED = new Set([
  'http://www.w3.org',
  'http://json-schema.org',
  'https://json-schema.org',
  'https://spec.openapis.org',
  'https://datatracker.ietf.org',
  'https://www.rfc-editor.org',
  'https://github.com',
  'https://swagger.io',
  'https://validator.swagger.io',
  'https://spdx.org',
  'https://redux.js.org',
  'https://reactjs.org',
  'http://fb.me',
  'https://example.com',
  'https://base',
  'https://vladimirgorej.com',
  'https://twitter.com',
  'https://www.facebook.com',
  'https://instagram.com',
  'https://www.tiktok.com',
  'https://soundcloud.com',
]);

type Json = Record<string, unknown>;

/** Follows a local `$ref` (`#/components/...`). */
function resolve(document: OpenApiDocument, node: unknown): Json {
  let at = node as Json;
  while (typeof at.$ref === 'string') {
    at = (at.$ref as string)
      .slice(2)
      .split('/')
      .reduce<Json>((n, part) => n[part] as Json, document as unknown as Json);
  }
  return at;
}

function operation(document: OpenApiDocument, route: string): Json {
  const [method, path] = route.split(' ') as [string, string];
  const op = (document.paths?.[path] as Json | undefined)?.[method.toLowerCase()] as Json | undefined;
  if (!op) throw new Error(`${route} is not described`);
  return op;
}

function response(document: OpenApiDocument, route: string, status: number): Json {
  const res = (operation(document, route).responses as Json)[String(status)];
  if (!res) throw new Error(`${route} has no ${status} response`);
  return resolve(document, res);
}

function jsonSchemaOf(document: OpenApiDocument, res: Json): Json {
  return resolve(document, ((res.content as Json)['application/json'] as Json).schema);
}

/** The method and path of every route registered on the app itself or on a router mounted at its root. */
function registeredRoutes(app: Express): string[] {
  const found: string[] = [];
  type Layer = { route?: { path: string; methods: Record<string, boolean> }; handle?: { stack?: Layer[] } };
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) for (const m of Object.keys(layer.route.methods)) found.push(`${m.toUpperCase()} ${layer.route.path}`);
      else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return found;
}

describe('OpenAPI description', () => {
  let t: TestApp;
  let document: OpenApiDocument;
  before(async () => {
    t = await startTestApp();
    document = (await request(t.server).get('/api/openapi.json').expect(200)).body as OpenApiDocument;
  });
  after(() => t.close());

  describe('GET /api/openapi.json', () => {
    it('needs no token and answers the document as JSON, cacheable for a few minutes', async () => {
      const res = await request(t.server).get('/api/openapi.json').expect(200).expect('Content-Type', /^application\/json/);
      expect(res.headers['www-authenticate']).to.equal(undefined);
      expect(res.headers['cache-control']).to.match(/^public, max-age=(\d+)$/);
      expect(Number(/max-age=(\d+)/.exec(res.headers['cache-control'] as string)![1])).to.be.within(1, 600);
    });

    it('is not refused for a bad bearer token either: it never looks at one', async () => {
      await request(t.server).get('/api/openapi.json').set('Authorization', 'Bearer not-a-token').expect(200);
    });

    it('serves the document generated from the schemas at start-up', () => {
      expect(document).to.deep.equal(openApiDocument({ sessionCookieName: t.config.session.cookieName }));
    });

    it('still leaves every other /api path behind the token', async () => {
      await request(t.server).get('/api/openapi.yaml').expect(401).expect('WWW-Authenticate', 'Bearer realm="api"');
    });
  });

  describe('the document', () => {
    it('is valid OpenAPI 3.1 by a standard validator', async () => {
      const validator = new Validator();
      const result = await validator.validate(structuredClone(document) as never);
      expect(result, JSON.stringify(result.errors)).to.deep.equal({ valid: true });
      expect(validator.version).to.equal('3.1');
      expect(document.openapi).to.match(/^3\.1\.\d+$/);
    });

    it('is refused by the same validator when a reference points nowhere (the check is real)', async () => {
      const broken = structuredClone(document) as unknown as { paths: Json };
      ((((broken.paths['/api/me'] as Json).get as Json).responses as Json)['200'] as Json).content = { 'application/json': { schema: { $ref: '#/components/schemas/Nowhere' } } };
      expect((await new Validator().validate(broken as never)).valid).to.equal(false);
    });

    it('describes every route of the contract, each with an operation id, a summary and responses', () => {
      for (const route of CONTRACT_ROUTES) {
        const op = operation(document, route);
        expect(op.operationId, route).to.be.a('string');
        expect(op.summary, route).to.be.a('string');
        expect(Object.keys(op.responses as Json), route).to.have.length.greaterThan(0);
      }
      const described = Object.entries(document.paths ?? {}).flatMap(([path, item]) => Object.keys(item as Json).map((m) => `${m.toUpperCase()} ${path}`));
      expect(described.sort()).to.deep.equal([...CONTRACT_ROUTES].sort());
    });

    it('describes every /api route the app registers (a new one cannot be left out)', () => {
      const apiRoutes = registeredRoutes(t.app).filter((r) => r.split(' ')[1]!.startsWith('/api'));
      expect(apiRoutes).to.include.members(['GET /api/me', 'GET /api/users', 'GET /api/openapi.json']);
      for (const route of apiRoutes) expect(() => operation(document, route), route).to.not.throw();
    });

    it('has both security schemes, and each operation names the one it takes (or none)', () => {
      const schemes = document.components?.securitySchemes as Json;
      expect(schemes.bearerAuth).to.include({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
      expect(schemes.introspectionClient).to.include({ type: 'http', scheme: 'basic' });
      expect(schemes.sessionCookie).to.include({ type: 'apiKey', in: 'cookie', name: t.config.session.cookieName });
      expect(operation(document, 'GET /api/me').security).to.deep.equal([{ bearerAuth: [] }]);
      expect(operation(document, 'GET /api/users').security).to.deep.equal([{ bearerAuth: [] }]);
      expect(operation(document, 'POST /auth/introspect').security).to.deep.equal([{ introspectionClient: [] }]);
      expect(operation(document, 'GET /auth/token').security).to.deep.equal([{ sessionCookie: [] }]);
      for (const route of ['GET /api/openapi.json', 'GET /.well-known/jwks.json', 'GET /healthz', 'GET /readyz']) {
        expect(operation(document, route).security, route).to.deep.equal([]);
      }
    });

    it('documents the introspection form body: token, and the optional token_type_hint', () => {
      const body = operation(document, 'POST /auth/introspect').requestBody as Json;
      expect(body.required).to.equal(true);
      const schema = resolve(document, ((body.content as Json)['application/x-www-form-urlencoded'] as Json).schema);
      expect(Object.keys(schema.properties as Json)).to.deep.equal(['token', 'token_type_hint']);
      expect(schema.required).to.deep.equal(['token']);
    });

    it('gives every error answer the {"error", "message"} shape, and nothing else', () => {
      let errors = 0;
      for (const route of CONTRACT_ROUTES) {
        for (const [status, res] of Object.entries(operation(document, route).responses as Json)) {
          if (Number(status) < 400) continue;
          const schema = jsonSchemaOf(document, resolve(document, res));
          expect(schema, `${route} ${status}`).to.deep.include({ type: 'object', required: ['error', 'message'], additionalProperties: false });
          expect(Object.keys(schema.properties as Json), `${route} ${status}`).to.deep.equal(['error', 'message']);
          errors += 1;
        }
      }
      expect(errors).to.be.greaterThan(15);
      expect(document.components?.schemas?.Error).to.deep.include({ required: ['error', 'message'] });
    });

    it('names the RFC 6750 codes of the bearer routes and documents their WWW-Authenticate challenge', () => {
      for (const route of ['GET /api/me', 'GET /api/users']) {
        const unauthorized = response(document, route, 401);
        expect((jsonSchemaOf(document, unauthorized).properties as Json).error).to.deep.include({ enum: ['unauthorized', 'invalid_token'] });
        expect(resolve(document, (unauthorized.headers as Json)['WWW-Authenticate'])).to.have.property('schema');
      }
      const forbidden = response(document, 'GET /api/users', 403);
      expect((jsonSchemaOf(document, forbidden).properties as Json).error).to.deep.include({ enum: ['insufficient_scope', 'insufficient_user_authentication'] });
      const challenge = resolve(document, (forbidden.headers as Json)['WWW-Authenticate']);
      expect(JSON.stringify(challenge.examples)).to.contain('error=\\"insufficient_scope\\"');
    });

    it('names invalid_client (with the Basic challenge) and too_many_requests (with Retry-After) for introspection', () => {
      const unauthorized = response(document, 'POST /auth/introspect', 401);
      expect((jsonSchemaOf(document, unauthorized).properties as Json).error).to.deep.include({ enum: ['invalid_client'] });
      expect(resolve(document, (unauthorized.headers as Json)['WWW-Authenticate']).schema).to.deep.include({ const: 'Basic realm="introspect"' });
      const throttled = response(document, 'POST /auth/introspect', 429);
      expect((jsonSchemaOf(document, throttled).properties as Json).error).to.deep.include({ enum: ['too_many_requests'] });
      expect(throttled.headers).to.have.property('Retry-After');
    });

    it('describes both introspection answers: active with the claims, inactive with nothing else', () => {
      const schema = jsonSchemaOf(document, response(document, 'POST /auth/introspect', 200));
      const [active, inactive] = (schema.anyOf as Json[]).map((s) => resolve(document, s));
      expect(active!.required).to.have.members(['active', 'sub', 'username', 'roles', 'exp', 'iat', 'iss', 'aud', 'jti', 'sid', 'token_type']);
      expect(inactive).to.deep.include({ required: ['active'], additionalProperties: false });
    });

    it('publishes only public key members in the JWKS schema', () => {
      const jwk = resolve(document, document.components?.schemas?.PublicJwk);
      expect(jwk.additionalProperties).to.equal(false);
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(jwk.properties as Json).to.not.have.property(member);
    });

    it('holds examples that its own schemas accept', () => {
      let checked = 0;
      for (const schema of Object.values(schemas) as unknown[]) {
        const examples = (schema as ZodType).meta?.()?.examples as unknown[] | undefined;
        for (const example of examples ?? []) {
          expect(() => (schema as ZodType).parse(example)).to.not.throw();
          checked += 1;
        }
      }
      expect(checked).to.be.greaterThan(3);
    });
  });

  describe('the contract check every test app runs', () => {
    it('turns an answer the description does not allow into a 500 and reports it', async () => {
      const mismatches: string[] = [];
      const strict = await startTestApp({
        checkResponses: (doc) => {
          const changed = structuredClone(doc);
          const me = changed.components!.schemas!.Me as { required: string[]; properties: Json };
          me.properties.email = { type: 'string' };
          me.required.push('email');
          return responseContract(changed, (line) => mismatches.push(line));
        },
      });
      try {
        await request(strict.server).get('/healthz').expect(200);
        const { token } = await userWithToken(strict.server);
        const res = await request(strict.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(500);
        expect(res.body).to.deep.equal({ error: 'internal_error', message: 'Something went wrong on our side.' });
        expect(mismatches).to.have.length(1);
        expect(mismatches[0]).to.match(/^GET \/api\/me answered 200 .*must have required property 'email'/);
      } finally {
        await strict.close();
      }
    });
  });
});

describe('GET /docs', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  /** The scripts and stylesheets the page loads, as the app serves them. */
  async function pageAndAssets(): Promise<{ html: string; assets: Map<string, string> }> {
    const res = await request(t.server).get('/docs').expect(200).expect('Content-Type', /^text\/html/);
    const html = res.text;
    const assets = new Map<string, string>();
    for (const [, url] of html.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"/g)) {
      const asset = await request(t.server).get(url!).expect(200);
      assets.set(url!, asset.text);
    }
    return { html, assets };
  }

  it('is public and served under the app\'s page CSP, with nothing loosened', async () => {
    const res = await request(t.server).get('/docs').expect(200);
    const csp = res.headers['content-security-policy'] as string;
    expect(csp).to.contain("script-src 'self'").and.contain("style-src 'self'").and.contain("connect-src 'self'").and.contain("default-src 'none'");
    expect(csp).to.not.match(/unsafe-inline|unsafe-eval|https?:/);
    expect(res.text).to.contain('data-spec-url="/api/openapi.json"');
  });

  it('loads only its own scripts and stylesheets, and neither the HTML, the stylesheets nor the start-up script name an outside origin', async () => {
    const { html, assets } = await pageAndAssets();
    expect([...assets.keys()].sort()).to.deep.equal(['/docs/assets/swagger-ui-bundle.js', '/docs/assets/swagger-ui.css', '/static/docs.css', '/static/docs.js', '/static/logo.svg']);
    for (const [, url] of html.matchAll(/\b(?:src|href|action)="([^"]*)"/g)) expect(url, 'every address on the page is on this origin').to.match(/^\/(?!\/)|^#/);
    expect(html).to.not.match(/https?:\/\//);
    for (const [url, text] of assets) {
      if (url.endsWith('.css')) {
        expect(text, url).to.not.match(/@import/);
        for (const [, target = ''] of text.matchAll(/url\(\s*["']?([^"')]+)/g)) expect(target, `${url}: url(${target.slice(0, 40)}…)`).to.match(/^data:|^\/(?!\/)|^#/);
      }
    }
    expect(assets.get('/static/docs.js')).to.not.match(/https?:\/\//);
    expect(assets.get('/static/docs.js')).to.match(/validatorUrl: null/);
  });

  it('serves a viewer bundle that names no outside origin but known identifiers and links it never loads', async () => {
    const bundle = (await request(t.server).get('/docs/assets/swagger-ui-bundle.js').expect(200)).text;
    const origins = new Set([...bundle.matchAll(/https?:\/\/[A-Za-z0-9.-]+/g)].map(([origin]) => origin));
    expect([...origins].filter((o) => !BUNDLE_ORIGINS_NEVER_LOADED.has(o))).to.deep.equal([]);
  });

  it('serves only the two viewer files it needs from swagger-ui-dist, cacheable like /static', async () => {
    const css = await request(t.server).get('/docs/assets/swagger-ui.css').expect(200).expect('Content-Type', /text\/css/);
    expect(css.headers['cache-control']).to.match(/^public, max-age=\d+$/);
    for (const other of ['index.html', 'swagger-initializer.js', 'package.json', '..%2Fpackage.json', 'swagger-ui-bundle.js.map']) {
      await request(t.server).get(`/docs/assets/${other}`).expect(404);
    }
  });
});
