import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { BearerError } from '../errors.js';
import type { TokenService } from '../services/tokens.js';
import type { UserService } from '../services/users.js';

/** `Bearer <b64token>` (RFC 6750 section 2.1); the scheme is case-insensitive. */
const BEARER_HEADER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Authenticates `/api` requests from the Authorization header only (never a
 * query string or cookie) and sets `req.principal`. The user must still exist
 * and not be disabled.
 */
export function bearerAuth(deps: { tokens: TokenService; users: UserService }): RequestHandler {
  return async (req: Request, _res: Response, next: NextFunction) => {
    const header = req.headers.authorization;
    const match = header ? BEARER_HEADER.exec(header) : null;
    if (!match) throw BearerError.missing();
    const claims = deps.tokens.verify(match[1]!);
    const user = await deps.users.findActiveById(Number(claims.sub));
    if (!user) throw BearerError.invalid('The token user is unknown or disabled');
    req.principal = { user, claims };
    next();
  };
}

/** Lets the request through only when the bearer's user has the role; 403 insufficient_scope otherwise. */
export function requireRole(role: string): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    if (!req.principal) throw BearerError.missing();
    if (!req.principal.user.roles.includes(role)) throw BearerError.insufficientScope(role);
    next();
  };
}
