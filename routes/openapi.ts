import { readFileSync } from 'node:fs';
import path from 'node:path';
import { OpenApiGeneratorV31, OpenAPIRegistry, type ResponseConfig } from '@asteasolutions/zod-to-openapi';
import { z, type ZodType } from 'zod';
import {
  type AppError,
  BearerError,
  ClientAuthError,
  ForbiddenError,
  InternalError,
  NotSignedInError,
  PayloadTooLargeError,
  ServiceUnavailableError,
  TooManyRequestsError,
  UnsupportedMediaTypeError,
} from '../errors.js';
import { projectRoot } from '../paths.js';
import {
  bearerForbiddenSchema,
  bearerUnauthorizedSchema,
  clientUnauthorizedSchema,
  errorSchema,
  forbiddenSchema,
  healthSchema,
  internalErrorSchema,
  introspectionRequestSchema,
  introspectionSchema,
  jwksSchema,
  meSchema,
  notReadySchema,
  notSignedInSchema,
  openApiDocumentSchema,
  readySchema,
  requestBodyErrorSchema,
  serviceUnavailableSchema,
  tokenSchema,
  tooManyRequestsSchema,
  userListSchema,
  type ActiveIntrospectionBody,
  type ErrorBody,
  type NotReadyBody,
} from './api-schemas.js';

/** The OpenAPI document as generated (the library's 3.1 document type). */
export type OpenApiDocument = ReturnType<OpenApiGeneratorV31['generateDocument']>;

export interface OpenApiOptions {
  /** The session cookie `/auth/token` reads (`tb.sid`, or `__Host-tb.sid` in production). */
  sessionCookieName: string;
}

const JSON_TYPE = 'application/json';

/** What the error handler answers for an error of the catalogue: the documented examples come from the real errors. */
function errorExample(error: AppError): { value: ErrorBody } {
  return { value: { error: error.publicCode, message: error.message } };
}

/**
 * The OpenAPI 3.1 description of every JSON route: `/api/*`, `/auth/token`,
 * `/auth/introspect`, the JWKS and the probes, generated from the zod schemas
 * the routes type their answers with (routes/api-schemas.ts). `createApp`
 * builds it once and serves it at `GET /api/openapi.json` and `/docs`.
 *
 * @example
 * const document = openApiDocument({ sessionCookieName: config.session.cookieName });
 */
export function openApiDocument(options: OpenApiOptions): OpenApiDocument {
  const registry = new OpenAPIRegistry();

  const bearer = registry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'A token from `GET /auth/token`, in the `Authorization` header only (never a query string, cookie or body).',
  });
  const client = registry.registerComponent('securitySchemes', 'introspectionClient', {
    type: 'http',
    scheme: 'basic',
    description: 'An API client from `npm run clients -- create <name>`: `client_id` and `client_secret`, form-encoded, then HTTP Basic (RFC 6749 section 2.3.1).',
  });
  const session = registry.registerComponent('securitySchemes', 'sessionCookie', {
    type: 'apiKey',
    in: 'cookie',
    name: options.sessionCookieName,
    description: 'The browser session from signing in through `/auth/login` (HttpOnly: a script cannot read it).',
  });

  const bearerChallenge = registry.registerComponent('headers', 'WWW-Authenticate-Bearer', {
    description: 'The RFC 6750 challenge: `Bearer realm="api"`, with `error`, `error_description` (and `scope`) when a token was sent.',
    schema: { type: 'string' },
    examples: {
      missing: { value: BearerError.missing().headers['WWW-Authenticate'] },
      invalid: { value: BearerError.invalid('The token has expired').headers['WWW-Authenticate'] },
      insufficientScope: { value: BearerError.insufficientScope('admin').headers['WWW-Authenticate'] },
    },
  });
  const basicChallenge = registry.registerComponent('headers', 'WWW-Authenticate-Basic', {
    description: 'The client must authenticate with HTTP Basic.',
    schema: { type: 'string', const: new ClientAuthError().headers['WWW-Authenticate'] },
  });
  const cookieChallenge = registry.registerComponent('headers', 'WWW-Authenticate-Cookie', {
    description: 'Sign in through the form first.',
    schema: { type: 'string', const: new NotSignedInError().headers['WWW-Authenticate'] },
  });
  const retryAfter = registry.registerComponent('headers', 'Retry-After', {
    description: 'Seconds to wait before trying again.',
    schema: { type: 'integer', minimum: 0, examples: [5] },
  });
  const noStore = registry.registerComponent('headers', 'Cache-Control-No-Store', {
    description: 'Never cached.',
    schema: { type: 'string', const: 'no-store' },
  });
  const cacheable = registry.registerComponent('headers', 'Cache-Control-Public', {
    description: 'Cacheable by anyone for a few minutes (at most 600 s).',
    schema: { type: 'string', pattern: '^public, max-age=\\d+$', examples: ['public, max-age=300'] },
  });

  function json(description: string, schema: ZodType, extra: Omit<ResponseConfig, 'description' | 'content'> & { examples?: Record<string, { value: unknown; summary?: string }> } = {}): ResponseConfig {
    const { examples, ...rest } = extra;
    for (const [name, example] of Object.entries(examples ?? {})) {
      // A wrong example is a programming error: the app does not start with one.
      const checked = schema.safeParse(example.value);
      if (!checked.success) throw new TypeError(`OpenAPI example "${name}" (${description}) does not match its schema: ${checked.error.message}`);
    }
    return { description, ...rest, content: { [JSON_TYPE]: { schema, ...(examples ? { examples } : {}) } } };
  }
  const unavailable = json('The database could not be reached.', serviceUnavailableSchema, {
    headers: { 'Retry-After': retryAfter.ref },
    examples: { unavailable: errorExample(new ServiceUnavailableError()) },
  });
  const internal = json('An unexpected failure (logged with the `X-Request-Id` of the answer).', internalErrorSchema, {
    examples: { internal: errorExample(new InternalError()) },
  });
  const bearerUnauthorized = json('No usable token: no or malformed header (`unauthorized`), or a token refused for its signature, algorithm, claims, expiry, user or revocation (`invalid_token`).', bearerUnauthorizedSchema, {
    headers: { 'WWW-Authenticate': bearerChallenge.ref },
    examples: {
      missing: { summary: 'No Authorization header', ...errorExample(BearerError.missing()) },
      expired: { summary: 'An expired token', ...errorExample(BearerError.invalid('The token has expired')) },
    },
  });
  const bearerSecurity = [{ [bearer.name]: [] }];

  registry.registerPath({
    method: 'get',
    path: '/api/me',
    operationId: 'getMe',
    tags: ['API'],
    summary: 'The token\'s user',
    description: 'The user the bearer token belongs to, with the current name and roles from the database.',
    security: bearerSecurity,
    responses: {
      200: json('The token\'s user.', meSchema),
      401: bearerUnauthorized,
      500: internal,
      503: unavailable,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/users',
    operationId: 'listUsers',
    tags: ['API'],
    summary: 'Every account (role admin)',
    description: 'Needs the `admin` role; with `admin` in `REQUIRE_2FA_ROLES`, also a token from a two-factor sign-in (`amr` holds `mfa`).',
    security: bearerSecurity,
    responses: {
      200: json('Every account.', userListSchema),
      401: bearerUnauthorized,
      403: json('The token is valid but not enough.', bearerForbiddenSchema, {
        headers: { 'WWW-Authenticate': bearerChallenge.ref },
        examples: {
          insufficientScope: { summary: 'Not an admin', ...errorExample(BearerError.insufficientScope('admin')) },
          insufficientUserAuthentication: { summary: 'An admin signed in with a password only', ...errorExample(BearerError.insufficientUserAuthentication('admin')) },
        },
      }),
      500: internal,
      503: unavailable,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/openapi.json',
    operationId: 'getOpenApiDocument',
    tags: ['API'],
    summary: 'This description',
    description: 'Public: no token needed. Generated at start-up from the schemas the routes answer with.',
    security: [],
    responses: { 200: json('This OpenAPI 3.1 document.', openApiDocumentSchema, { headers: { 'Cache-Control': cacheable.ref } }) },
  });

  registry.registerPath({
    method: 'get',
    path: '/auth/token',
    operationId: 'mintToken',
    tags: ['Tokens'],
    summary: 'Mint an access token',
    description: 'For the signed-in browser session: a new JWT for `/api`. Never readable cross-origin (`Cross-Origin-Resource-Policy: same-origin`), and a request its browser marks cross-site is refused.',
    security: [{ [session.name]: [] }],
    request: {
      headers: z.object({
        'Sec-Fetch-Site': z.string().optional().meta({ description: 'Set by browsers; `cross-site` is refused with 403.', examples: ['same-origin'] }),
      }),
    },
    responses: {
      200: json('A fresh token.', tokenSchema, { headers: { 'Cache-Control': noStore.ref } }),
      401: json('Not signed in.', notSignedInSchema, {
        headers: { 'WWW-Authenticate': cookieChallenge.ref },
        examples: { notSignedIn: errorExample(new NotSignedInError()) },
      }),
      403: json('A cross-site request.', forbiddenSchema, { examples: { crossSite: errorExample(new ForbiddenError('Tokens are minted for this site only.')) } }),
      500: internal,
      503: unavailable,
    },
  });

  const activeExample: ActiveIntrospectionBody = {
    active: true,
    sub: '42',
    username: 'ada',
    roles: ['admin'],
    exp: 1795000000,
    iat: 1794978400,
    iss: 'token-bridge',
    aud: 'api',
    jti: '0b8f6a8e-51d5-4e51-9d0b-3c1f1f0c3a52',
    sid: '6f1c2a8d-8a43-4a4a-9e3c-2b0e7e4d9f10',
    token_type: 'Bearer',
  };
  registry.registerPath({
    method: 'post',
    path: '/auth/introspect',
    operationId: 'introspectToken',
    tags: ['Introspection'],
    summary: 'Is this token live? (RFC 7662)',
    description:
      'For resource servers: the same checks as `/api` (signature, claims, user, session, revocation), answered with the token\'s current state. Failed client authentications are counted per address and block it for a while (429).',
    security: [{ [client.name]: [] }],
    request: {
      body: {
        required: true,
        content: {
          'application/x-www-form-urlencoded': {
            schema: introspectionRequestSchema,
            examples: { token: { value: { token: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl', token_type_hint: 'access_token' } } },
          },
        },
      },
    },
    responses: {
      200: json('The token\'s state (never cached).', introspectionSchema, {
        headers: { 'Cache-Control': noStore.ref },
        examples: { active: { summary: 'A live token', value: activeExample }, inactive: { summary: 'Any token /api would refuse', value: { active: false } } },
      }),
      400: json('The body could not be read.', requestBodyErrorSchema),
      401: json('Missing or wrong client credentials.', clientUnauthorizedSchema, {
        headers: { 'WWW-Authenticate': basicChallenge.ref },
        examples: { invalidClient: errorExample(new ClientAuthError()) },
      }),
      413: json('The body is over 16 KiB or has too many fields.', requestBodyErrorSchema, { examples: { tooLarge: errorExample(new PayloadTooLargeError()) } }),
      415: json('A body encoding or charset we do not read.', requestBodyErrorSchema, { examples: { unsupported: errorExample(new UnsupportedMediaTypeError()) } }),
      429: json('This address failed too often.', tooManyRequestsSchema, {
        headers: { 'Retry-After': retryAfter.ref },
        examples: { blocked: errorExample(new TooManyRequestsError(60)) },
      }),
      500: internal,
      503: unavailable,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/.well-known/jwks.json',
    operationId: 'getJwks',
    tags: ['Keys'],
    summary: 'The public keys that verify tokens',
    description: 'Public. With ES256/RS256 the current, next and still-verifying previous keys (`max-age=300`); with HS256 `{"keys": []}` (`max-age=600`).',
    security: [],
    responses: {
      200: json('The key set.', jwksSchema, { headers: { 'Cache-Control': cacheable.ref } }),
      500: internal,
      503: unavailable,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/healthz',
    operationId: 'getHealth',
    tags: ['Operations'],
    summary: 'Liveness',
    security: [],
    responses: { 200: json('The process is up.', healthSchema) },
  });

  const notReady: NotReadyBody = { error: 'not_ready', message: 'The database is not reachable.' };
  registry.registerPath({
    method: 'get',
    path: '/readyz',
    operationId: 'getReadiness',
    tags: ['Operations'],
    summary: 'Readiness',
    security: [],
    responses: {
      200: json('The database answers.', readySchema),
      503: json('The database did not answer within 2 s.', notReadySchema, { examples: { notReady: { value: notReady } } }),
    },
  });

  // The common error shape is named by no response (each narrows `error` to its codes), so it is added by hand.
  const generated = new OpenApiGeneratorV31([...registry.definitions, { type: 'schema', schema: errorSchema }]).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'Token Bridge API',
      version: packageVersion(),
      description:
        'Sign in through the browser pages, mint a JWT at `GET /auth/token`, call `/api` with `Authorization: Bearer <token>`. Other services verify tokens offline with the JWKS or online with introspection. Every error is JSON `{"error", "message"}`.',
    },
    tags: [
      { name: 'API', description: 'Bearer-token routes.' },
      { name: 'Tokens', description: 'Minting, for a signed-in browser.' },
      { name: 'Introspection', description: 'For resource servers (API clients).' },
      { name: 'Keys', description: 'Verification keys for other services.' },
      { name: 'Operations', description: 'Probes for load balancers and orchestrators.' },
    ],
  });
  return withoutEmptyMaps(generated);
}

/** The generator writes `webhooks: {}` and `components.parameters: {}`; leave out what holds nothing. */
function withoutEmptyMaps(document: OpenApiDocument): OpenApiDocument {
  const { webhooks, components, ...rest } = document;
  const kept = Object.fromEntries(Object.entries(components ?? {}).filter(([, v]) => Object.keys(v as object).length > 0));
  return { ...rest, components: kept, ...(webhooks && Object.keys(webhooks).length > 0 ? { webhooks } : {}) };
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}
