import type { Request, RequestHandler, Response, Router } from 'express';
import { bearerAuth, requireRole } from '../middleware/bearer.js';
import { notFound } from '../middleware/errors.js';
import type { TokenAccess } from '../services/token-access.js';
import type { TokenService } from '../services/tokens.js';
import type { UserAdmin } from '../services/user-admin.js';
import type { MeBody, UserListBody } from './api-schemas.js';
import type { OpenApiDocument } from './openapi.js';

/** How long clients may cache the description (it changes only with a deploy). */
const OPENAPI_MAX_AGE_SECONDS = 300;

/**
 * Registers the bearer-token API on the app itself, with full paths. Every
 * `/api` request gets the JSON headers and needs a valid token (but the
 * public OpenAPI description, generated once by `createApp`); unknown
 * paths are JSON 404s. Registered on the app rather than as a router mounted at
 * `/api`: a call walks one route instead of two mount layers, a nested router
 * and its URL rewrite (a few percent of an `/api/me` call in the profile).
 */
export function registerApiRoutes(
  router: Pick<Router, 'get' | 'use'>,
  deps: {
    tokens: TokenService;
    access: TokenAccess;
    admin: UserAdmin;
    headers: RequestHandler;
    requireTwoFactorRoles: readonly string[];
    openApi: OpenApiDocument;
  },
): void {
  const authenticated = [deps.headers, bearerAuth(deps)];

  router.get('/api/me', ...authenticated, me);
  router.get('/api/users', ...authenticated, requireRole('admin', deps.requireTwoFactorRoles), listUsers);
  // Public, like /docs and the JWKS: before the catch-all that wants a token (after the hot routes, which it would only slow).
  router.get('/api/openapi.json', deps.headers, openApi);
  router.use('/api', ...authenticated, notFound);

  function openApi(_req: Request, res: Response) {
    res.set('Cache-Control', `public, max-age=${OPENAPI_MAX_AGE_SECONDS}`).json(deps.openApi);
  }

  function me(req: Request, res: Response) {
    const { user } = req.principal!;
    const body: MeBody = { id: String(user.id), username: user.username, roles: user.roles };
    res.json(body);
  }

  async function listUsers(_req: Request, res: Response) {
    const users = await deps.admin.list();
    const body: UserListBody = users.map((u) => ({
      id: String(u.id),
      username: u.username,
      roles: u.roles,
      disabled: u.disabled,
      createdAt: u.createdAt.toISOString(),
    }));
    res.json(body);
  }
}
