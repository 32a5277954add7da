import { Router, type RequestHandler } from 'express';

/** How long other services may cache the key set (the contract allows at most 600 s). */
const JWKS_MAX_AGE_SECONDS = 600;

/**
 * `GET /.well-known/jwks.json`: the public keys that verify this app's
 * tokens. With HS256, the only algorithm so far, that is none: the secret
 * that signs is never published (`{"keys": []}`).
 */
export function wellKnownRoutes(deps: { headers: RequestHandler }): Router {
  const router = Router();
  router.get('/.well-known/jwks.json', deps.headers, (_req, res) => {
    res.set('Cache-Control', `public, max-age=${JWKS_MAX_AGE_SECONDS}`).json({ keys: [] });
  });
  return router;
}
