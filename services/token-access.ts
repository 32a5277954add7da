import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.js';
import { BearerError } from '../errors.js';
import type { Metrics, TokenVerificationResult } from './metrics.js';
import type { SessionService } from './sessions.js';
import { TOKEN_EXPIRED, type AccessTokenClaims, type TokenService } from './tokens.js';
import type { PublicUser, UserService } from './users.js';

/**
 * Decides whether a correctly signed token may still be used: its user exists
 * and is enabled, its session was not ended on purpose, and it was issued
 * after the user's "tokens valid after" instant.
 *
 * The user's state (UserService's cache) and each session's revocation status
 * (here) are cached in-process for `ttlMs` (≤ 5 s), so a revocation made on
 * another instance is honoured within `ttlMs`; revocations made by this
 * process are honoured at once via {@link forgetUser}.
 */
export class TokenAccess {
  private readonly revokedCache: LRUCache<string, { revoked: boolean }> | null;

  constructor(
    private readonly users: UserService,
    private readonly sessions: SessionService,
    ttlMs: number,
    now: Clock,
    private readonly metrics?: Pick<Metrics, 'tokenVerified'>,
  ) {
    // ttlResolution 0: lru-cache otherwise reuses a clock reading for 1 ms of real time, so an
    // injected clock that has moved past the TTL would still get a stale answer.
    this.revokedCache = ttlMs > 0 ? new LRUCache({ max: 50_000, ttl: ttlMs, ttlResolution: 0, perf: { now } }) : null;
  }

  /** The token's user, or a BearerError (invalid_token). */
  async check(claims: AccessTokenClaims): Promise<PublicUser> {
    const id = Number(claims.sub);
    // Between cache refreshes both answers are in memory: read them without a round of promises.
    let user = this.users.cachedActive(id);
    let revoked = this.revokedCache?.get(claims.sid)?.revoked;
    if (user === undefined || revoked === undefined) {
      [user, revoked] = await Promise.all([user === undefined ? this.users.findActiveById(id) : user, revoked ?? this.fetchRevoked(claims.sid)]);
    }
    if (!user) throw BearerError.invalid('The token user is unknown or disabled');
    if (revoked) throw BearerError.invalid('The session this token came from has ended');
    const validAfter = user.tokensValidAfter;
    if (validAfter && claims.iat < Math.floor(validAfter.getTime() / 1000)) {
      throw BearerError.invalid('The token has been revoked');
    }
    return user;
  }

  /** Asks the database (after `check` found no cached answer) and caches the answer. */
  private async fetchRevoked(publicId: string): Promise<boolean> {
    const revoked = await this.sessions.isRevoked(publicId);
    this.revokedCache?.set(publicId, { revoked });
    return revoked;
  }

  /** Counts one {@link acceptToken} outcome (token_verifications_total); nothing without metrics. */
  countVerification(result: TokenVerificationResult): void {
    this.metrics?.tokenVerified(result);
  }

  /** Drops every cached answer (the change feed was down: whatever changed meanwhile is unknown). */
  forgetAll(): void {
    this.users.forgetAll();
    this.revokedCache?.clear();
  }

  /** Drops cached answers after this process (or, through the change feed, another) revoked something of the user's. */
  forgetUser(userId: number): void {
    this.users.forget(userId);
    // Revocations are rare: forgetting every cached session status is simpler than tracking ids.
    this.revokedCache?.clear();
  }
}

/** A token that passed every check, with the current state of its user. */
export interface AcceptedToken {
  user: PublicUser;
  claims: AccessTokenClaims;
}

/**
 * The one sequence that decides whether a bearer token is accepted, shared by
 * `/api` and introspection: signature, header and claims ({@link TokenService}),
 * then the user's and the session's current state ({@link TokenAccess}).
 * Throws a BearerError (`invalid_token`) when it is not. Each outcome is
 * counted here, once (token_verifications_total by result, when the app has
 * metrics).
 */
export async function acceptToken(tokens: TokenService, access: TokenAccess, token: string): Promise<AcceptedToken> {
  let claims: AccessTokenClaims;
  try {
    // HS256 answers synchronously; ES256/RS256 may first reload the key set (see TokenService.verifyCurrent).
    const verified = tokens.verifyCurrent(token);
    claims = verified instanceof Promise ? await verified : verified;
  } catch (err) {
    access.countVerification(err instanceof BearerError ? (err.message === TOKEN_EXPIRED ? 'expired' : 'invalid') : 'error');
    throw err;
  }
  let user: PublicUser;
  try {
    user = await access.check(claims);
  } catch (err) {
    access.countVerification(err instanceof BearerError ? 'revoked' : 'error');
    throw err;
  }
  access.countVerification('valid');
  return { user, claims };
}
