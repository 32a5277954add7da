import { Router, type NextFunction, type Request, type Response } from 'express';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { AuditLog } from '../services/audit-log.js';
import { publicJwk, type SigningKeys } from '../services/signing-keys.js';
import type { AccessTokenClaims, TokenService } from '../services/tokens.js';
import { auditActor } from './audit-actor.js';

/** Sends visitors without a session to sign in, coming back here afterwards. */
export function requireSignedInPage(req: Request, res: Response, next: NextFunction): void {
  if (req.user && req.session?.meta) return next();
  res.redirect(302, `/auth/login?returnTo=${encodeURIComponent(req.originalUrl)}`);
}

export interface PageRouteDeps {
  clock: Clock;
  /** `publicUrl` builds the token page's curl line and JWKS address (never the request's Host header, which the client chooses). */
  config: Pick<Config, 'publicUrl'>;
  tokens: TokenService;
  /** When given, a token minted by the token page is recorded like one from `GET /auth/token`. */
  audit: AuditLog;
  /** The key set with ES256/RS256 (the token page shows the public key of the token's `kid`); undefined with HS256. */
  keys?: SigningKeys;
}

/** The public key that verifies a token, as the token page shows it. */
export interface VerificationKey {
  kid: string;
  alg: string;
  /** The JWKS entry: public members only, pretty-printed. */
  jwkJson: string;
  /** SPKI (`-----BEGIN PUBLIC KEY-----`), without the final line break. */
  pem: string;
  jwksUrl: string;
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
    const minted = deps.tokens.mint(req.user!, req.session.meta!.id, req.session.meta!.amr);
    await deps.audit.record('token_minted', auditActor(req, req.user), minted.claims.jti);
    const [header, payload] = minted.token
      .split('.')
      .slice(0, 2)
      .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown) as [{ alg: string; kid?: string }, Record<string, unknown>];
    const key = deps.keys && header.kid ? verificationKey(deps.keys, header.kid, deps.config.publicUrl) : null;
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
      signature: { ...signatureStatus(deps.tokens, minted.token), alg: header.alg, kid: header.kid ?? null },
      key,
      claims: describeClaims(payload, nowSeconds),
      origin: deps.config.publicUrl,
    });
  }

  return router;
}

/**
 * The key the server itself verifies the token with, so the page shows the
 * very key that checked it: public members only (a public `KeyObject` has no
 * others, and {@link publicJwk} keeps only the listed ones). Null when the
 * kid is not one that may verify.
 */
function verificationKey(keys: SigningKeys, kid: string, publicUrl: string): VerificationKey | null {
  const publicKey = keys.verifier(kid);
  if (!publicKey) return null;
  return {
    kid,
    alg: keys.algorithm,
    jwkJson: JSON.stringify(publicJwk(publicKey, kid, keys.algorithm), null, 2),
    pem: String(publicKey.export({ type: 'spki', format: 'pem' })).trimEnd(),
    jwksUrl: `${publicUrl}/.well-known/jwks.json`,
  };
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
  amr: 'How you signed in (RFC 8176): pwd a password, otp a one-time code, mfa more than one factor',
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
