import { randomUUID, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { BearerError } from '../errors.js';
import type { Metrics } from './metrics.js';
import type { SigningKeys } from './signing-keys.js';
import type { PublicUser } from './users.js';

export interface MintedToken {
  token: string;
  claims: AccessTokenClaims;
  expiresIn: number;
}

/**
 * Authentication methods (RFC 8176) a session and its tokens record: `pwd`
 * password, `otp` a one-time code (TOTP or a recovery code), `mfa` more than
 * one factor, `hwk`/`swk` a hardware- or software-bound key (passkeys),
 * `user` user presence verified by the authenticator.
 */
export const AUTH_METHODS = ['pwd', 'otp', 'mfa', 'hwk', 'swk', 'user'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

/** Sessions created before `amr` was recorded were password sign-ins. */
export const PASSWORD_ONLY: readonly AuthMethod[] = Object.freeze(['pwd']);

/** The description of the `invalid_token` error for an expired token (metrics count these apart). */
export const TOKEN_EXPIRED = 'The token has expired';

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
  /** How the user signed in (RFC 8176); tokens minted before it was recorded have none (a password). */
  amr: z.array(z.enum(AUTH_METHODS)).min(1).max(AUTH_METHODS.length).optional(),
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
/** With ES256/RS256 the `kid` too, looked up in our own key set only (never a path, URL or query). */
const ALLOWED_KEYED_HEADER_KEYS = new Set(['alg', 'typ', 'kid']);
const KID_SHAPE = /^[A-Za-z0-9_-]{1,64}$/;

/** A token naming a `kid` that is not in our key set (maybe one made a moment ago on another instance). */
class UnknownKeyIdError extends Error {}

/** What the verified-token cache holds: the claims, and the key that signed them (ES256/RS256). */
interface VerifiedEntry {
  claims: AccessTokenClaims;
  kid: string | null;
}

/** How many verified tokens are remembered (about 1 KB each with their claims). */
export const VERIFIED_CACHE_MAX = 10_000;

/**
 * Mints and verifies access tokens with the configured algorithm, key, issuer
 * and audience: HS256 with JWT_SECRET_KEY, or ES256/RS256 with the key set
 * ({@link SigningKeys}: the current key signs, the `kid` picks the verifier).
 *
 * Verification results are remembered per token string (as fast-jwt's
 * verifier cache does): the signature, algorithm, issuer, audience, header and
 * claim shapes of a given string never change, so a token that passed them
 * once is not decoded and re-hashed on every API call. Only the checks that
 * depend on the time (`exp`, `iat`) run again on every use. Only tokens that
 * passed every check are remembered; any other string, even one differing in
 * one character, gets the full check. With ES256/RS256 each cache hit also
 * checks that its signing key may still verify, so a revoked key's tokens
 * are refused as soon as the key set is reloaded.
 */
export class TokenService {
  private readonly verified = new LRUCache<string, VerifiedEntry>({ max: VERIFIED_CACHE_MAX });

  constructor(
    private readonly settings: Config['jwt'],
    private readonly now: Clock,
    private readonly keys?: SigningKeys,
    private readonly metrics?: Pick<Metrics, 'tokenMinted'>,
  ) {
    if (settings.algorithm !== 'HS256' && !keys) throw new TypeError(`TokenService with ${settings.algorithm} needs the signing keys`);
  }

  get expiresIn(): number {
    return this.settings.expiresInSeconds;
  }

  /**
   * Signs an explicit claims object for a user and the session it is minted
   * from, with how the user signed in there. The default understates (a
   * password), never overstates: the routes pass the session's own `amr`.
   */
  mint(user: PublicUser, sessionPublicId: string, amr: readonly AuthMethod[] = PASSWORD_ONLY): MintedToken {
    const iat = Math.floor(this.now() / 1000);
    const claims: AccessTokenClaims = {
      sub: String(user.id),
      username: user.username,
      roles: [...user.roles],
      amr: [...amr],
      sid: sessionPublicId,
      jti: randomUUID(),
      iat,
      exp: iat + this.settings.expiresInSeconds,
      iss: this.settings.issuer,
      aud: this.settings.audience,
    };
    let token: string;
    if (this.keys) {
      const { kid, alg, privateKey } = this.keys.signer();
      token = jwt.sign(claims, privateKey, { algorithm: alg, header: { alg, typ: 'JWT', kid } });
    } else {
      token = jwt.sign(claims, this.settings.key, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'JWT' } });
    }
    this.metrics?.tokenMinted();
    return { token, claims, expiresIn: this.settings.expiresInSeconds };
  }

  /**
   * Verifies signature, algorithm, issuer, audience and lifetime, then the
   * shape of every claim. Throws a {@link BearerError} (`invalid_token`).
   */
  verify(token: string): AccessTokenClaims {
    try {
      return this.verifyOnce(token);
    } catch (err) {
      if (err instanceof UnknownKeyIdError) throw BearerError.invalid('The token signing key is not accepted');
      throw err;
    }
  }

  /**
   * {@link verify} for the API: first brings the key set up to date when the
   * loaded copy is older than its reload interval, and reloads once (at most
   * once a second) when the token names a kid not loaded yet. With HS256 it
   * answers at once (no promise), like {@link verify}.
   */
  verifyCurrent(token: string): AccessTokenClaims | Promise<AccessTokenClaims> {
    return this.keys ? this.verifyWithReload(token, this.keys) : this.verify(token);
  }

  /** Whether tokens carry a `kid` from the key set (ES256/RS256) rather than HS256. */
  get usesKeySet(): boolean {
    return this.keys !== undefined;
  }

  private async verifyWithReload(token: string, keys: SigningKeys): Promise<AccessTokenClaims> {
    const stale = keys.fresh();
    if (stale) await stale;
    try {
      return this.verifyOnce(token);
    } catch (err) {
      if (!(err instanceof UnknownKeyIdError)) throw err;
      const reload = keys.reloadForUnknownKid();
      if (reload) await reload;
      return this.verify(token);
    }
  }

  private verifyOnce(token: string): AccessTokenClaims {
    if (token.length > MAX_TOKEN_LENGTH) throw BearerError.invalid('The token is too long');
    const nowSeconds = Math.floor(this.now() / 1000);
    let entry = this.verified.get(token);
    if (entry && entry.kid !== null && !this.keys?.verifier(entry.kid)) {
      // Its key was revoked (or has left the set) since: the token goes with it.
      this.verified.delete(token);
      throw BearerError.invalid('The token signing key is not accepted');
    }
    if (!entry) {
      entry = this.keys ? this.verifyWithKeySet(token, nowSeconds, this.keys) : { claims: this.verifyFully(token, nowSeconds), kid: null };
      // Kept no longer than the token can be used.
      const ttl = (entry.claims.exp + this.settings.clockToleranceSeconds - nowSeconds) * 1000;
      if (ttl > 0) this.verified.set(token, entry, { ttl });
    }
    const { claims } = entry;
    // The same bounds jsonwebtoken applies, rechecked on every use.
    if (nowSeconds >= claims.exp + this.settings.clockToleranceSeconds) throw BearerError.invalid(TOKEN_EXPIRED);
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
      const decoded = this.jwtVerify(token, keys[i]!, 'HS256', nowSeconds, i + 1 < keys.length);
      if (decoded) return decoded;
    }
  }

  /**
   * jsonwebtoken's verify with our issuer, audience and clock, its failures
   * mapped to `invalid_token`. With `nextKeyToTry`, a wrong signature is
   * `null` (try the next key) instead of a failure.
   */
  private jwtVerify(token: string, key: KeyObject, algorithm: jwt.Algorithm, nowSeconds: number, nextKeyToTry = false): jwt.Jwt | null {
    try {
      return jwt.verify(token, key, {
        algorithms: [algorithm],
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        clockTolerance: this.settings.clockToleranceSeconds,
        clockTimestamp: nowSeconds,
        complete: true,
      });
    } catch (err) {
      if (nextKeyToTry && err instanceof jwt.JsonWebTokenError && err.message === 'invalid signature') return null;
      if (err instanceof jwt.TokenExpiredError) throw BearerError.invalid(TOKEN_EXPIRED);
      if (err instanceof jwt.NotBeforeError) throw BearerError.invalid('The token is not valid yet');
      throw BearerError.invalid('The token signature or claims are invalid');
    }
  }

  /**
   * ES256/RS256: the header is read before any key is chosen. Only `alg`,
   * `typ` and `kid` are allowed (so `jwk`, `jku`, `x5u`, `x5c` and `crit` are
   * refused, never followed), `alg` must be the configured one (so `none` and
   * HS256 signed with our public key as the secret never reach a verifier),
   * and the kid must be one of our loaded keys. jsonwebtoken then checks the
   * signature with that public key, allowing only the configured algorithm.
   */
  private verifyWithKeySet(token: string, nowSeconds: number, keys: SigningKeys): VerifiedEntry {
    if (!JWS_COMPACT.test(token)) throw BearerError.invalid('The token is not a JWT');
    let header: unknown;
    try {
      header = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8'));
    } catch {
      throw BearerError.invalid('The token is not a JWT');
    }
    if (!header || typeof header !== 'object' || Array.isArray(header)) throw BearerError.invalid('The token is not a JWT');
    const h = header as Record<string, unknown>;
    if (Object.keys(h).some((k) => !ALLOWED_KEYED_HEADER_KEYS.has(k)) || (h.typ !== undefined && h.typ !== 'JWT')) {
      throw BearerError.invalid('The token header is not accepted');
    }
    if (h.alg !== keys.algorithm) throw BearerError.invalid('The token signature or claims are invalid');
    if (typeof h.kid !== 'string' || !KID_SHAPE.test(h.kid)) throw BearerError.invalid('The token signing key is not accepted');
    const publicKey = keys.verifier(h.kid);
    if (!publicKey) throw new UnknownKeyIdError();
    const decoded = this.jwtVerify(token, publicKey, keys.algorithm, nowSeconds)!;
    return { claims: this.checkedClaims(decoded.payload), kid: h.kid };
  }

  /** Signature, algorithm, issuer, audience, lifetime, header members and claim shapes; frozen claims. */
  private verifyFully(token: string, nowSeconds: number): AccessTokenClaims {
    if (!JWS_COMPACT.test(token)) throw BearerError.invalid('The token is not a JWT');
    const decoded = this.verifySignedByOneOfOurKeys(token, nowSeconds);
    const headerKeys = Object.keys(decoded.header);
    if (headerKeys.some((k) => !ALLOWED_HEADER_KEYS.has(k)) || (decoded.header.typ !== undefined && decoded.header.typ !== 'JWT')) {
      throw BearerError.invalid('The token header is not accepted');
    }
    return this.checkedClaims(decoded.payload);
  }

  /** The claim shapes; frozen claims. */
  private checkedClaims(payload: unknown): AccessTokenClaims {
    const parsed = claimsSchema.safeParse(payload);
    if (!parsed.success) throw BearerError.invalid('The token claims are malformed');
    // Shared by every later request with this token: nobody may change them.
    Object.freeze(parsed.data.roles);
    if (parsed.data.amr) Object.freeze(parsed.data.amr);
    return Object.freeze(parsed.data);
  }
}
