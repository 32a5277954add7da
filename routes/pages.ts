import { Router, type NextFunction, type Request, type Response } from 'express';
import type { TokenService } from '../services/tokens.js';

/** Sends visitors without a session to sign in, coming back here afterwards. */
export function requireSignedInPage(req: Request, res: Response, next: NextFunction): void {
  if (req.user && req.session?.meta) return next();
  res.redirect(302, `/auth/login?returnTo=${encodeURIComponent(req.originalUrl)}`);
}

/** Home and the token inspector page. */
export function pageRoutes(deps: { tokens: TokenService }): Router {
  const router = Router();

  router.get('/', home);
  router.get('/token', requireSignedInPage, tokenPage);

  function home(_req: Request, res: Response) {
    res.render('home', { title: 'Home' });
  }

  function tokenPage(req: Request, res: Response) {
    const minted = deps.tokens.mint(req.user!, req.session.meta!.id);
    const [header, payload] = minted.token.split('.').map((part) => Buffer.from(part, 'base64url').toString('utf8'));
    res.set('Cache-Control', 'no-store');
    res.render('token', {
      title: 'Your API token',
      token: minted.token,
      headerJson: JSON.stringify(JSON.parse(header!), null, 2),
      payloadJson: JSON.stringify(JSON.parse(payload!), null, 2),
      issuedAt: new Date(minted.claims.iat * 1000),
      expiresAt: new Date(minted.claims.exp * 1000),
      expiresInWords: durationInWords(minted.expiresIn),
      origin: `${req.protocol}://${req.get('host') ?? 'localhost'}`,
    });
  }

  return router;
}

/** "5 h 59 min", "12 min", "40 s". */
export function durationInWords(seconds: number): string {
  if (seconds < 60) return `${Math.max(0, Math.floor(seconds))} s`;
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h > 0 ? `${h} h${m ? ` ${m} min` : ''}` : `${m} min`;
}
