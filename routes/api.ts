import { Router, type Request, type Response } from 'express';
import { bearerAuth, requireRole } from '../middleware/bearer.js';
import { notFound } from '../middleware/errors.js';
import type { TokenAccess } from '../services/token-access.js';
import type { TokenService } from '../services/tokens.js';
import type { UserAdmin } from '../services/user-admin.js';

/** The bearer-token API. Every route needs a valid token; unknown paths are JSON 404s. */
export function apiRoutes(deps: { tokens: TokenService; access: TokenAccess; admin: UserAdmin }): Router {
  const router = Router();
  router.use(bearerAuth(deps));

  router.get('/me', me);
  router.get('/users', requireRole('admin'), listUsers);
  router.use(notFound);

  function me(req: Request, res: Response) {
    const { user } = req.principal!;
    res.set('Cache-Control', 'no-store').json({ id: String(user.id), username: user.username, roles: user.roles });
  }

  async function listUsers(_req: Request, res: Response) {
    const users = await deps.admin.list();
    res.set('Cache-Control', 'no-store').json(
      users.map((u) => ({ id: String(u.id), username: u.username, roles: u.roles, disabled: u.disabled, createdAt: u.createdAt.toISOString() })),
    );
  }

  return router;
}
