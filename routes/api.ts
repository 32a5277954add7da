import { Router, type Request, type Response } from 'express';
import { notFound } from '../middleware/errors.js';
import { bearerAuth } from '../middleware/bearer.js';
import type { TokenService } from '../services/tokens.js';
import type { UserService } from '../services/users.js';

/** The bearer-token API. Every route needs a valid token; unknown paths are JSON 404s. */
export function apiRoutes(deps: { tokens: TokenService; users: UserService }): Router {
  const router = Router();
  router.use(bearerAuth(deps));

  router.get('/me', me);
  router.use(notFound);

  function me(req: Request, res: Response) {
    const { user } = req.principal!;
    res.set('Cache-Control', 'no-store').json({ id: String(user.id), username: user.username, roles: user.roles });
  }

  return router;
}
