import { randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { BearerError } from '../errors.js';
import type { PublicUser } from './users.js';

export interface MintedToken {
  token: string;
  claims: AccessTokenClaims;
  expiresIn: number;
}

/** Longest token we are willing to parse: ours are ~400 bytes. */
export const MAX_TOKEN_LENGTH = 4096;

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * The claims of every access token this app mints, checked on every verify.
 * The one declaration: {@link AccessTokenClaims} is inferred from it.
 */
const claimsSchema = z.object({
  /** User id, as a string (RFC 7519 StringOrURI): a positive integer without leading zeros. */
  sub: z.string().regex(/^[1-9]\d{0,15}$/),
  /** The username when the token was minted (display only: the API reads the current one). */
  username: z.string().min(1).max(256),
  /** The user's roles when the token was minted. */
  roles: z.array(z.string().max(64)).max(64),
  /** Public id of the session the token was minted from (never the cookie value). */
  sid: z.string().min(1).max(64),
  /** The token's own id (a random UUID), recorded in the audit log. */
  jti: z.string().min(1).max(64),
  /** Issued at, in whole seconds since the epoch. */
  iat: z.number().int(),
  /** Expires at, in whole seconds since the epoch (`iat` + the configured lifetime). */
  exp: z.number().int(),
  /** Issuer: `JWT_ISSUER`. */
  iss: z.string(),
  /** Audience: `JWT_AUDIENCE`. */
  aud: z.string(),
});

/** The claims of every access token this app mints. Typed once, from {@link claimsSchema}. */
export type AccessTokenClaims = z.infer<typeof claimsSchema>;

/** Header members we produce; anything else (kid, jku, jwk, x5u, x5c, crit …) is refused, never followed. */
const ALLOWED_HEADER_KEYS = new Set(['alg', 'typ']);

/** How many verified tokens are remembered (about 1 KB each with their claims). */
export const VERIFIED_CACHE_MAX = 10_000;

/**
 * Mints and verifies HS256 access tokens with the configured key, issuer and audience.
 *
 * Verification results are remembered per token string (as fast-jwt's
 * verifier cache does): the signature, algorithm, issuer, audience, header and
 * claim shapes of a given string never change, so a token that passed them
 * once is not decoded and re-hashed on every API call. Only the checks that
 * depend on the time (`exp`, `iat`) run again on every use. Only tokens that
 * passed every check are remembered; any other string, even one differing in
 * one character, gets the full check.
 */
export class TokenService {
  private readonly verified = new LRUCache<string, AccessTokenClaims>({ max: VERIFIED_CACHE_MAX });

  constructor(
    private readonly settings: Config['jwt'],
    private readonly now: Clock,
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
    const nowSeconds = Math.floor(this.now() / 1000);
    let claims = this.verified.get(token);
    if (!claims) {
      claims = this.verifyFully(token, nowSeconds);
      // Kept no longer than the token can be used.
      const ttl = (claims.exp + this.settings.clockToleranceSeconds - nowSeconds) * 1000;
      if (ttl > 0) this.verified.set(token, claims, { ttl });
    }
    // The same bounds jsonwebtoken applies, rechecked on every use.
    if (nowSeconds >= claims.exp + this.settings.clockToleranceSeconds) throw BearerError.invalid('The token has expired');
    if (claims.iat > nowSeconds + this.settings.clockToleranceSeconds) throw BearerError.invalid('The token is not valid yet');
    return claims;
  }

  /**
   * jsonwebtoken's checks with the signing key, then with each older key of
   * JWT_SECRET_KEY (rotation): a signature that fails with one key is tried
   * with the next; any other failure (expiry, issuer …) is the answer.
   */
  private verifySignedByOneOfOurKeys(token: string, nowSeconds: number): jwt.Jwt {
    const keys = this.settings.verifyKeys;
    for (let i = 0; ; i += 1) {
      try {
        return jwt.verify(token, keys[i]!, {
          algorithms: ['HS256'],
          issuer: this.settings.issuer,
          audience: this.settings.audience,
          clockTolerance: this.settings.clockToleranceSeconds,
          clockTimestamp: nowSeconds,
          complete: true,
        });
      } catch (err) {
        const wrongKey = err instanceof jwt.JsonWebTokenError && err.message === 'invalid signature';
        if (wrongKey && i + 1 < keys.length) continue;
        if (err instanceof jwt.TokenExpiredError) throw BearerError.invalid('The token has expired');
        if (err instanceof jwt.NotBeforeError) throw BearerError.invalid('The token is not valid yet');
        throw BearerError.invalid('The token signature or claims are invalid');
      }
    }
  }

  /** Signature, algorithm, issuer, audience, lifetime, header members and claim shapes; frozen claims. */
  private verifyFully(token: string, nowSeconds: number): AccessTokenClaims {
    if (!JWS_COMPACT.test(token)) throw BearerError.invalid('The token is not a JWT');
    const decoded = this.verifySignedByOneOfOurKeys(token, nowSeconds);
    const headerKeys = Object.keys(decoded.header);
    if (headerKeys.some((k) => !ALLOWED_HEADER_KEYS.has(k)) || (decoded.header.typ !== undefined && decoded.header.typ !== 'JWT')) {
      throw BearerError.invalid('The token header is not accepted');
    }
    const parsed = claimsSchema.safeParse(decoded.payload);
    if (!parsed.success) throw BearerError.invalid('The token claims are malformed');
    // Shared by every later request with this token: nobody may change them.
    Object.freeze(parsed.data.roles);
    return Object.freeze(parsed.data);
  }
}
