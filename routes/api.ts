import type { Request, RequestHandler, Response, Router } from 'express';
import { bearerAuth, requireRole } from '../middleware/bearer.js';
import { notFound } from '../middleware/errors.js';
import type { TokenAccess } from '../services/token-access.js';
import type { TokenService } from '../services/tokens.js';
import type { UserAdmin } from '../services/user-admin.js';

/**
 * Registers the bearer-token API on the app itself, with full paths. Every
 * `/api` request gets the JSON headers and needs a valid token; unknown paths
 * are JSON 404s. Registered on the app rather than as a router mounted at
 * `/api`: a call walks one route instead of two mount layers, a nested router
 * and its URL rewrite (a few percent of an `/api/me` call in the profile).
 */
export function registerApiRoutes(
  router: Pick<Router, 'get' | 'use'>,
  deps: { tokens: TokenService; access: TokenAccess; admin: UserAdmin; headers: RequestHandler; requireTwoFactorRoles: readonly string[] },
): void {
  const authenticated = [deps.headers, bearerAuth(deps)];

  router.get('/api/me', ...authenticated, me);
  router.get('/api/users', ...authenticated, requireRole('admin', deps.requireTwoFactorRoles), listUsers);
  router.use('/api', ...authenticated, notFound);

  function me(req: Request, res: Response) {
    const { user } = req.principal!;
    res.json({ id: String(user.id), username: user.username, roles: user.roles });
  }

  async function listUsers(_req: Request, res: Response) {
    const users = await deps.admin.list();
    res.json(
      users.map((u) => ({ id: String(u.id), username: u.username, roles: u.roles, disabled: u.disabled, createdAt: u.createdAt.toISOString() })),
    );
  }
}
