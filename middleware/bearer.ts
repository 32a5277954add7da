import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { BearerError } from '../errors.js';
import { acceptToken, type TokenAccess } from '../services/token-access.js';
import type { TokenService } from '../services/tokens.js';

/** `Bearer <b64token>` (RFC 6750 section 2.1); the scheme is case-insensitive. */
const BEARER_HEADER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Authenticates `/api` requests from the Authorization header only (never a
 * query string or cookie) and sets `req.principal`. The user must still exist
 * and not be disabled, and the token must not be revoked (see TokenAccess).
 */
export function bearerAuth(deps: { tokens: TokenService; access: TokenAccess }): RequestHandler {
  return async (req: Request, _res: Response, next: NextFunction) => {
    const header = req.headers.authorization;
    // Node keeps the first of repeated Authorization lines and drops the rest; a proxy may keep the last.
    const match = header && authorizationLines(req) === 1 ? BEARER_HEADER.exec(header) : null;
    if (!match) throw BearerError.missing();
    req.principal = await acceptToken(deps.tokens, deps.access, match[1]!);
    next();
  };
}

/** How many Authorization field lines the request carried (RFC 9110 allows one). */
export function authorizationLines(req: Request): number {
  let count = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() === 'authorization') count += 1;
  }
  return count;
}

/**
 * Lets the request through only when the bearer's user has the role (403
 * `insufficient_scope` otherwise) and, for a role of REQUIRE_2FA_ROLES, when
 * the token says the user signed in with more than one factor (`amr` holds
 * `mfa`; 403 `insufficient_user_authentication`, RFC 9470, otherwise).
 */
export function requireRole(role: string, requireTwoFactorRoles: readonly string[]): RequestHandler {
  const needsMfa = requireTwoFactorRoles.includes(role);
  return (req: Request, _res: Response, next: NextFunction) => {
    if (!req.principal) throw BearerError.missing();
    if (!req.principal.user.roles.includes(role)) throw BearerError.insufficientScope(role);
    if (needsMfa && !req.principal.claims.amr?.includes('mfa')) throw BearerError.insufficientUserAuthentication(role);
    next();
  };
}
