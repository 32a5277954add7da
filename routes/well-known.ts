import { Router, type RequestHandler } from 'express';
import type { SigningKeys } from '../services/signing-keys.js';
import type { JwksBody } from './api-schemas.js';

/** How long other services may cache the key set with HS256 (nothing to follow: it is always empty). */
const EMPTY_JWKS_MAX_AGE_SECONDS = 600;
/**
 * With ES256/RS256: shorter, so a verifier that caches the JWKS for its
 * max-age drops a revoked key within 5 minutes (the contract allows up to 600 s).
 */
const JWKS_MAX_AGE_SECONDS = 300;

/**
 * `GET /.well-known/jwks.json`: the public keys that verify this app's
 * tokens. With HS256 that is none: the secret that signs is never published
 * (`{"keys": []}`). With ES256/RS256 the current, next and still-verifying
 * previous keys, public members only.
 */
export function wellKnownRoutes(deps: { headers: RequestHandler; keys?: SigningKeys }): Router {
  const router = Router();
  const { keys } = deps;
  router.get('/.well-known/jwks.json', deps.headers, async (_req, res) => {
    if (!keys) {
      const empty: JwksBody = { keys: [] };
      res.set('Cache-Control', `public, max-age=${EMPTY_JWKS_MAX_AGE_SECONDS}`).json(empty);
      return;
    }
    const stale = keys.fresh();
    if (stale) await stale;
    const body: JwksBody = { keys: keys.jwks() };
    res.set('Cache-Control', `public, max-age=${JWKS_MAX_AGE_SECONDS}`).json(body);
  });
  return router;
}
