import { z } from 'zod';

/**
 * The JSON answers of the API, `/auth/token`, `/auth/introspect`, the JWKS and
 * the probes, declared once: the routes type their bodies with the inferred
 * types, and `routes/openapi.ts` generates the OpenAPI description from the
 * same schemas. Objects are strict (`additionalProperties: false`), so a
 * member the description does not name (a password hash, a private key
 * member) fails the contract tests instead of reaching a client unnoticed.
 *
 * The `.meta({ id })` names become `components/schemas` entries; the ids are
 * registered in zod's global registry, so they must stay unique.
 */

/** A user id as the API writes it: the database id as a string, like the token's `sub`. */
const userId = z.string().regex(/^[1-9]\d{0,15}$/).meta({ description: 'The user id, as a string (the same as the token\'s `sub`).', examples: ['42'] });
const username = z.string().min(1).meta({ examples: ['ada'] });
const roles = z.array(z.string()).meta({ description: 'The user\'s current roles.', examples: [['admin']] });

export const meSchema = z
  .strictObject({ id: userId, username, roles })
  .meta({ id: 'Me', description: 'The token\'s user, as the database has it now.', examples: [{ id: '42', username: 'ada', roles: ['admin'] }] });
export type MeBody = z.infer<typeof meSchema>;

export const userSchema = z
  .strictObject({
    id: userId,
    username,
    roles,
    disabled: z.boolean().meta({ description: 'A disabled account cannot sign in, and its tokens are refused.' }),
    createdAt: z.iso.datetime().meta({ description: 'When the account was created (ISO 8601, UTC).', examples: ['2026-11-25T15:19:42.000Z'] }),
  })
  .meta({ id: 'User' });

export const userListSchema = z.array(userSchema).meta({
  id: 'UserList',
  description: 'Every account, in id order.',
  examples: [[{ id: '1', username: 'ada', roles: ['admin'], disabled: false, createdAt: '2026-11-25T15:19:42.000Z' }]],
});
export type UserListBody = z.infer<typeof userListSchema>;

/** A JWS in compact serialisation (three base64url parts). */
const compactJws = z.string().regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);

export const tokenSchema = z
  .strictObject({
    token: compactJws.meta({ description: 'The access token: a JWT signed with the configured algorithm (HS256 by default).' }),
    token_type: z.literal('Bearer'),
    expires_in: z.number().int().positive().meta({ description: 'Seconds until the token expires (`JWT_EXPIRES_IN`).', examples: [21600] }),
  })
  .meta({
    id: 'Token',
    description: 'A fresh access token for the signed-in user.',
    examples: [{ token: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsInVzZXJuYW1lIjoiYWRhIn0.c2lnbmF0dXJl', token_type: 'Bearer', expires_in: 21600 }],
  });
export type TokenBody = z.infer<typeof tokenSchema>;

/** The form body of `POST /auth/introspect` (RFC 7662 section 2.1). */
export const introspectionRequestSchema = z
  .object({
    token: z.string().meta({ description: 'The access token to inspect. Missing or empty answers `{"active": false}`.' }),
    token_type_hint: z.string().optional().meta({ description: 'Accepted and ignored: there is one kind of token.', examples: ['access_token'] }),
  })
  .meta({ id: 'IntrospectionRequest' });

export const activeIntrospectionSchema = z
  .strictObject({
    active: z.literal(true),
    sub: userId,
    username: username.meta({ description: 'The user\'s current name.', examples: ['ada'] }),
    roles,
    exp: z.number().int().meta({ description: 'Expiry, seconds since the epoch.', examples: [1795000000] }),
    iat: z.number().int().meta({ description: 'Issued at, seconds since the epoch.', examples: [1794978400] }),
    iss: z.string().meta({ description: '`JWT_ISSUER`.', examples: ['token-bridge'] }),
    aud: z.string().meta({ description: '`JWT_AUDIENCE`.', examples: ['api'] }),
    jti: z.string().meta({ description: 'The token\'s id.', examples: ['0b8f6a8e-51d5-4e51-9d0b-3c1f1f0c3a52'] }),
    sid: z.string().meta({ description: 'Public id of the session the token was minted from.', examples: ['6f1c2a8d-8a43-4a4a-9e3c-2b0e7e4d9f10'] }),
    token_type: z.literal('Bearer'),
  })
  .meta({ id: 'ActiveIntrospection', description: 'A token `/api` would accept now: its claims with the user\'s current name and roles (RFC 7662 section 2.2).' });
export type ActiveIntrospectionBody = z.infer<typeof activeIntrospectionSchema>;

export const inactiveIntrospectionSchema = z
  .strictObject({ active: z.literal(false) })
  .meta({ id: 'InactiveIntrospection', description: 'Any token `/api` would refuse (bad, expired, revoked, disabled user) or none: nothing more is said.' });

// A plain union (oneOf), not a discriminated one: OpenAPI discriminators name string values, `active` is a boolean.
export const introspectionSchema = z.union([activeIntrospectionSchema, inactiveIntrospectionSchema]).meta({ id: 'Introspection' });
export type IntrospectionBody = z.infer<typeof introspectionSchema>;

export const publicJwkSchema = z
  .strictObject({
    kty: z.string().meta({ description: '`EC` (ES256) or `RSA` (RS256).', examples: ['EC'] }),
    kid: z.string().meta({ examples: ['Jp6lX0QbRkq2yQ1Wm5d3uA'] }),
    alg: z.string().meta({ description: '`ES256` or `RS256`.', examples: ['ES256'] }),
    use: z.literal('sig'),
    crv: z.string().optional().meta({ examples: ['P-256'] }),
    x: z.string().optional(),
    y: z.string().optional(),
    n: z.string().optional(),
    e: z.string().optional(),
  })
  .meta({ id: 'PublicJwk', description: 'A public key: public members only (never `d`, `p`, `q`, `dp`, `dq`, `qi` or `k`).' });

export const jwksSchema = z
  .strictObject({ keys: z.array(publicJwkSchema) })
  .meta({
    id: 'Jwks',
    description: 'The keys that may verify a live token (RFC 7517). Empty with HS256: the secret is never published.',
    examples: [{ keys: [] }, { keys: [{ kty: 'EC', kid: 'Jp6lX0QbRkq2yQ1Wm5d3uA', alg: 'ES256', use: 'sig', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' }] }],
  });
export type JwksBody = z.infer<typeof jwksSchema>;

export const healthSchema = z.strictObject({ status: z.literal('ok') }).meta({ id: 'Health', description: 'The process is up.' });
export type HealthBody = z.infer<typeof healthSchema>;

export const readySchema = z
  .strictObject({ status: z.literal('ready'), database: z.literal('up') })
  .meta({ id: 'Ready', description: 'The database answered a `SELECT 1` within 2 s.' });
export type ReadyBody = z.infer<typeof readySchema>;

/** The shape of every JSON error: `error` is the catalogue code in lower case (errors.ts). */
export const errorSchema = z
  .strictObject({
    error: z.string().meta({ description: 'A stable code: `invalid_token`, `insufficient_scope`, `invalid_client`, `service_unavailable` …' }),
    message: z.string().meta({ description: 'For people; never a stack trace.' }),
  })
  .meta({ id: 'Error', description: 'Every API error: `{"error", "message"}`.', examples: [{ error: 'invalid_token', message: 'The token has expired' }] });
export type ErrorBody = z.infer<typeof errorSchema>;

/** The error shape with `error` limited to the codes one kind of answer can carry. */
function errorWith<const Codes extends readonly [string, ...string[]]>(id: string, codes: Codes, description: string) {
  return z.strictObject({ error: z.enum(codes), message: z.string() }).meta({ id, description });
}

/** 401 on the bearer routes (RFC 6750 section 3.1): no usable header, or a token refused. */
export const bearerUnauthorizedSchema = errorWith('BearerUnauthorized', ['unauthorized', 'invalid_token'], '`unauthorized`: no or malformed `Authorization: Bearer` header; `invalid_token`: the token is refused.');
/** 403 on role-restricted bearer routes: the role is missing, or it needs a token from a two-factor sign-in (RFC 9470). */
export const bearerForbiddenSchema = errorWith('BearerForbidden', ['insufficient_scope', 'insufficient_user_authentication'], '`insufficient_scope`: the user lacks the role; `insufficient_user_authentication`: the role (in `REQUIRE_2FA_ROLES`) needs a token from a sign-in with two-factor authentication.');
export const clientUnauthorizedSchema = errorWith('ClientUnauthorized', ['invalid_client'], 'Missing or wrong API-client credentials (RFC 6749 section 5.2).');
export const tooManyRequestsSchema = errorWith('TooManyRequests', ['too_many_requests'], 'Too many failed client authentications from this address: wait for `Retry-After` seconds.');
export const notSignedInSchema = errorWith('NotSignedIn', ['not_signed_in'], 'No signed-in session: sign in through the form first.');
export const forbiddenSchema = errorWith('Forbidden', ['forbidden'], 'A cross-site request (`Sec-Fetch-Site: cross-site`): tokens are minted for this site only.');
export const requestBodyErrorSchema = errorWith('RequestBodyError', ['bad_request', 'payload_too_large', 'unsupported_media_type'], 'The request body could not be read: over 16 KiB or too many fields (`payload_too_large`, or `bad_request` for too many fields), an encoding or charset we do not read (`unsupported_media_type`), or an aborted or malformed body.');
export const serviceUnavailableSchema = errorWith('ServiceUnavailable', ['service_unavailable'], 'The database could not be reached: retry after `Retry-After` seconds.');
export const internalErrorSchema = errorWith('InternalError', ['internal_error'], 'Something went wrong on our side (logged with its request id).');
export const notReadySchema = errorWith('NotReady', ['not_ready'], 'The database did not answer within 2 s.');
export type NotReadyBody = z.infer<typeof notReadySchema>;

/** What `GET /api/openapi.json` answers: this description itself (its shape is checked by an OpenAPI validator, not here). */
export const openApiDocumentSchema = z
  .looseObject({ openapi: z.string().regex(/^3\.1\.\d+$/), info: z.looseObject({ title: z.string(), version: z.string() }), paths: z.record(z.string(), z.unknown()) })
  .meta({ id: 'OpenApiDocument', description: 'An OpenAPI 3.1 document: the one you are reading.' });
