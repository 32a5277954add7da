import { randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { z } from 'zod';
import type { Config } from '../config.js';
import { BearerError } from '../errors.js';
import type { PublicUser } from './users.js';

/** The claims of every access token this app mints. Typed once, used everywhere. */
export interface AccessTokenClaims {
  /** User id, as a string (RFC 7519 StringOrURI). */
  sub: string;
  username: string;
  roles: string[];
  /** Public id of the session the token was minted from (never the cookie value). */
  sid: string;
  jti: string;
  iat: number;
  exp: number;
  iss: string;
  aud: string;
}

export interface MintedToken {
  token: string;
  claims: AccessTokenClaims;
  expiresIn: number;
}

/** Longest token we are willing to parse: ours are ~400 bytes. */
export const MAX_TOKEN_LENGTH = 4096;

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const claimsSchema = z.object({
  sub: z.string().regex(/^[1-9]\d{0,15}$/),
  username: z.string().min(1).max(256),
  roles: z.array(z.string().max(64)).max(64),
  sid: z.string().min(1).max(64),
  jti: z.string().min(1).max(64),
  iat: z.number().int(),
  exp: z.number().int(),
  iss: z.string(),
  aud: z.string(),
});

/** Header members we produce; anything else (kid, jku, jwk, x5u, x5c, crit …) is refused, never followed. */
const ALLOWED_HEADER_KEYS = new Set(['alg', 'typ']);

/** Mints and verifies HS256 access tokens with the configured key, issuer and audience. */
export class TokenService {
  constructor(
    private readonly settings: Config['jwt'],
    private readonly now: () => number = Date.now,
  ) {}

  get expiresIn(): number {
    return this.settings.expiresInSeconds;
  }

  /** Signs an explicit claims object for a user and session. */
  mint(user: PublicUser, sessionPublicId: string): MintedToken {
    const iat = Math.floor(this.now() / 1000);
    const claims: AccessTokenClaims = {
      sub: String(user.id),
      username: user.username,
      roles: [...user.roles],
      sid: sessionPublicId,
      jti: randomUUID(),
      iat,
      exp: iat + this.settings.expiresInSeconds,
      iss: this.settings.issuer,
      aud: this.settings.audience,
    };
    const token = jwt.sign(claims, this.settings.key, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'JWT' } });
    return { token, claims, expiresIn: this.settings.expiresInSeconds };
  }

  /**
   * Verifies signature, algorithm, issuer, audience and lifetime, then the
   * shape of every claim. Throws a {@link BearerError} (`invalid_token`).
   */
  verify(token: string): AccessTokenClaims {
    if (token.length > MAX_TOKEN_LENGTH) throw BearerError.invalid('The token is too long');
    if (!JWS_COMPACT.test(token)) throw BearerError.invalid('The token is not a JWT');
    let decoded: jwt.Jwt;
    try {
      decoded = jwt.verify(token, this.settings.key, {
        algorithms: ['HS256'],
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        clockTolerance: this.settings.clockToleranceSeconds,
        clockTimestamp: Math.floor(this.now() / 1000),
        complete: true,
      });
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError) throw BearerError.invalid('The token has expired');
      if (err instanceof jwt.NotBeforeError) throw BearerError.invalid('The token is not valid yet');
      throw BearerError.invalid('The token signature or claims are invalid');
    }
    const headerKeys = Object.keys(decoded.header);
    if (headerKeys.some((k) => !ALLOWED_HEADER_KEYS.has(k)) || (decoded.header.typ !== undefined && decoded.header.typ !== 'JWT')) {
      throw BearerError.invalid('The token header is not accepted');
    }
    const parsed = claimsSchema.safeParse(decoded.payload);
    if (!parsed.success) throw BearerError.invalid('The token claims are malformed');
    const claims = parsed.data;
    if (claims.iat > Math.floor(this.now() / 1000) + this.settings.clockToleranceSeconds) {
      throw BearerError.invalid('The token is not valid yet');
    }
    return claims;
  }
}
