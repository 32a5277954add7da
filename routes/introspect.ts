import type { Request, RequestHandler, Response } from 'express';
import { BearerError, ClientAuthError, TooManyRequestsError } from '../errors.js';
import { authorizationLines } from '../middleware/bearer.js';
import type { ApiClientService } from '../services/api-clients.js';
import type { Throttle } from '../services/throttle.js';
import { acceptToken, type TokenAccess } from '../services/token-access.js';
import type { TokenService } from '../services/tokens.js';
import type { IntrospectionBody } from './api-schemas.js';
import { requestActor } from './audit-actor.js';

/** `Basic <base64>` (RFC 7617); the scheme is case-insensitive. */
const BASIC_HEADER = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i;

/**
 * `POST /auth/introspect` (RFC 7662) for resource servers that need a token's
 * revocation status. The caller authenticates as an API client with HTTP
 * Basic (RFC 6749 section 2.3.1: the id and secret form-encoded, then
 * base64); failures are counted per address and block it for a while. The
 * form field `token` gets the same checks as `/api` (signature, claims, user,
 * session, revocation): `{"active": false}` for anything `/api` would refuse
 * (or no token at all), else the claims with the user's current name and
 * roles. `token_type_hint` is accepted and ignored: there is one kind of token.
 */
export function introspectRoute(deps: { tokens: TokenService; access: TokenAccess; clients: ApiClientService; throttle: Throttle }): RequestHandler {
  const { tokens, access, clients, throttle } = deps;
  return async function introspect(req: Request, res: Response) {
    if (req.headers.authorization === undefined) throw new ClientAuthError();
    const ip = requestActor(req).ip ?? 'unknown';
    const credentials = basicCredentials(req);
    const [verdict, client] = await Promise.all([
      throttle.checkClient(ip),
      credentials ? clients.authenticate(credentials.clientId, credentials.clientSecret) : null,
    ]);
    if (!verdict.allowed) throw new TooManyRequestsError(verdict.retryAfterSeconds);
    if (!client) {
      await throttle.clientFailed(ip);
      throw new ClientAuthError();
    }
    const token: unknown = (req.body as Record<string, unknown> | undefined)?.token;
    res.json(await inspect(typeof token === 'string' ? token : ''));
  };

  async function inspect(token: string): Promise<IntrospectionBody> {
    if (!token) return { active: false };
    try {
      const { user, claims } = await acceptToken(tokens, access, token);
      const { sub, exp, iat, iss, aud, jti, sid } = claims;
      return { active: true, sub, username: user.username, roles: user.roles, exp, iat, iss, aud, jti, sid, token_type: 'Bearer' };
    } catch (err) {
      if (err instanceof BearerError) return { active: false };
      throw err;
    }
  }
}

/** The client id and secret of a single well-formed `Authorization: Basic` line, or null. */
function basicCredentials(req: Request): { clientId: string; clientSecret: string } | null {
  const match = authorizationLines(req) === 1 ? BASIC_HEADER.exec(req.headers.authorization ?? '') : null;
  if (!match) return null;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) return null;
  try {
    const formDecode = (part: string) => decodeURIComponent(part.replaceAll('+', ' '));
    return { clientId: formDecode(decoded.slice(0, colon)), clientSecret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    return null;
  }
}
