import { Router, type NextFunction, type Request, type Response } from 'express';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { AuditLog } from '../services/audit-log.js';
import type { AccessTokenClaims, TokenService } from '../services/tokens.js';
import { auditActor } from './audit-actor.js';

/** Sends visitors without a session to sign in, coming back here afterwards. */
export function requireSignedInPage(req: Request, res: Response, next: NextFunction): void {
  if (req.user && req.session?.meta) return next();
  res.redirect(302, `/auth/login?returnTo=${encodeURIComponent(req.originalUrl)}`);
}

export interface PageRouteDeps {
  clock: Clock;
  /** `publicUrl` builds the token page's curl line (never the request's Host header, which the client chooses). */
  config: Pick<Config, 'publicUrl'>;
  tokens: TokenService;
  /** When given, a token minted by the token page is recorded like one from `GET /auth/token`. */
  audit: AuditLog;
}

/** One row of the token page's claim table. */
export interface ClaimRow {
  name: string;
  /** The value as shown: strings as they are, arrays joined, numbers as digits. */
  value: string;
  meaning: string;
  /** For the NumericDate claims (`iat`, `exp`, `nbf`): the time and how far it is from now, in words. */
  time?: { at: Date; words: string };
}

/** Home and the token inspector page. */
export function pageRoutes(deps: PageRouteDeps): Router {
  const router = Router();

  router.get('/', home);
  router.get('/token', requireSignedInPage, tokenPage);

  function home(_req: Request, res: Response) {
    res.render('home', { title: 'Home', tokenLifetime: durationInWords(deps.tokens.expiresIn) });
  }

  async function tokenPage(req: Request, res: Response) {
    const minted = deps.tokens.mint(req.user!, req.session.meta!.id);
    await deps.audit.record('token_minted', auditActor(req, req.user), minted.claims.jti);
    const [header, payload] = minted.token
      .split('.')
      .slice(0, 2)
      .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown);
    const nowSeconds = Math.floor(deps.clock() / 1000);
    res.render('token', {
      title: 'Your API token',
      token: minted.token,
      headerJson: JSON.stringify(header, null, 2),
      payloadJson: JSON.stringify(payload, null, 2),
      issuedAt: new Date(minted.claims.iat * 1000),
      expiresAt: new Date(minted.claims.exp * 1000),
      expiresInWords: durationInWords(minted.expiresIn),
      lifetimeWords: durationInWords(minted.claims.exp - minted.claims.iat),
      issuedWords: relativeInWords(minted.claims.iat - nowSeconds),
      signature: signatureStatus(deps.tokens, minted.token),
      claims: describeClaims(payload as Record<string, unknown>, nowSeconds),
      origin: deps.config.publicUrl,
    });
  }

  return router;
}

/** Checks the token the way the API will, so the page states what the server really concluded. */
function signatureStatus(tokens: TokenService, token: string): { verified: boolean; problem: string | null } {
  try {
    tokens.verify(token);
    return { verified: true, problem: null };
  } catch (err) {
    return { verified: false, problem: err instanceof Error ? err.message : 'The token could not be verified' };
  }
}

const CLAIM_MEANINGS: Readonly<Record<keyof AccessTokenClaims | 'nbf', string>> = {
  sub: 'Subject: your user id',
  username: 'Your username',
  roles: 'Your roles when the token was minted',
  sid: 'The sign-in session it came from: signing out there ends this token too',
  jti: 'This token’s own id',
  iat: 'Issued at',
  nbf: 'Not valid before',
  exp: 'Expires at',
  iss: 'Issuer: who signed it',
  aud: 'Audience: who accepts it',
};

/** The payload's claims in token order, each with what it means and, for times, when that is in words. */
export function describeClaims(payload: Record<string, unknown>, nowSeconds: number): ClaimRow[] {
  return Object.entries(payload).map(([name, raw]) => {
    const meaning = (CLAIM_MEANINGS as Record<string, string | undefined>)[name] ?? '';
    const value = Array.isArray(raw) ? (raw.length ? raw.join(', ') : 'none') : typeof raw === 'string' ? raw : JSON.stringify(raw);
    if ((name === 'iat' || name === 'exp' || name === 'nbf') && typeof raw === 'number') {
      return { name, value, meaning, time: { at: new Date(raw * 1000), words: relativeInWords(raw - nowSeconds) } };
    }
    return { name, value, meaning };
  });
}

/** "5 h 59 min", "12 min", "40 s". */
export function durationInWords(seconds: number): string {
  if (seconds < 60) return `${Math.max(0, Math.floor(seconds))} s`;
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h > 0 ? `${h} h${m ? ` ${m} min` : ''}` : `${m} min`;
}

/**
 * A time relative to now, in words.
 * @example relativeInWords(21540) // 'in 5 h 59 min'
 * @example relativeInWords(-2) // 'just now'
 */
export function relativeInWords(secondsFromNow: number): string {
  if (Math.abs(secondsFromNow) < 60) return secondsFromNow > 0 ? `in ${Math.floor(secondsFromNow)} s` : 'just now';
  return secondsFromNow > 0 ? `in ${durationInWords(secondsFromNow)}` : `${durationInWords(-secondsFromNow)} ago`;
}
